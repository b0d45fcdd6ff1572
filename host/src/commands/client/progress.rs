//! Progress of a long upload: a bar on a terminal; otherwise (a CI log, a
//! pipe) plain lines on stderr at each step, so stdout stays the result.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    pub bar: ProgressBar,
    /// Whether progress is written as plain lines rather than a bar.
    pub plain: bool,
}

impl Progress {
    pub fn new(size: u64) -> Self {
        let plain = !std::io::stderr().is_terminal();
        let bar = if !plain {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            eprintln!("uploading {size} bytes");
            ProgressBar::hidden()
        };
        Self { bar, plain }
    }

    /// A step, as a plain line when there is no bar.
    pub fn step(&self, line: &str) {
        if self.plain {
            eprintln!("{line}");
        }
    }
}

/// What the bar turns into once every byte is sent and the host compiles.
pub fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A file as a stream of chunks.
pub fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
