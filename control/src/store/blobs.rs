//! Component bytes, stored once by digest under `DATA_DIR/blobs/sha256/`.
//!
//! An upload streams into a temporary file while its sha256 is computed; only
//! a complete, accepted upload is fsynced and renamed to its digest's name, so
//! a crash leaves either the whole blob or a temporary file that the next
//! start removes.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload is empty")]
    Empty,
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("cannot store the component: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored component {0} is missing")]
    Missing(String),
}

/// A complete upload, not yet stored under its digest.
pub struct Received {
    temp: tempfile::TempPath,
    pub digest: String,
    pub size: u64,
}

impl Received {
    pub fn path(&self) -> &Path {
        &self.temp
    }
}

#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens the store under `root`, removing temporary files an earlier run
    /// left behind.
    pub fn open(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root })
    }

    pub fn path_of(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root.join("sha256").join(format!("{hex}.wasm"))
    }

    /// Streams `body` to a temporary file, hashing it on the way. Stops
    /// reading as soon as the body passes `limit`.
    pub async fn receive<S, E>(&self, mut body: S, limit: u64) -> Result<Received, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(self.root.join("tmp"))?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&temp).await?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(BlobError::Empty);
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(Received {
            temp,
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            size,
        })
    }

    /// Moves a complete upload to its digest's name; a blob already there is
    /// the same bytes, so it is kept.
    pub fn persist(&self, received: Received) -> Result<PathBuf, BlobError> {
        let path = self.path_of(&received.digest);
        if path.exists() {
            return Ok(path);
        }
        received.temp.persist(&path).map_err(|e| e.error)?;
        if let Some(dir) = path.parent()
            && let Ok(dir) = std::fs::File::open(dir)
        {
            // Makes the rename durable before the version is recorded.
            let _ = dir.sync_all();
        }
        Ok(path)
    }

    /// Stores bytes fetched from elsewhere, already checked against
    /// `digest`, as an upload is stored: a temporary file, fsynced, renamed.
    pub fn keep(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, BlobError> {
        use std::io::Write;
        let mut temp = tempfile::Builder::new()
            .prefix("fetched-")
            .tempfile_in(self.root.join("tmp"))?;
        temp.write_all(bytes)?;
        temp.as_file().sync_all()?;
        self.persist(Received {
            temp: temp.into_temp_path(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
        })
    }

    /// The digests of every stored blob.
    pub fn stored(&self) -> std::io::Result<Vec<String>> {
        let mut digests = Vec::new();
        for entry in std::fs::read_dir(self.root.join("sha256"))? {
            let name = entry?.file_name();
            if let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) {
                digests.push(format!("sha256:{hex}"));
            }
        }
        Ok(digests)
    }

    /// Deletes one blob; one already gone is no error.
    pub fn remove(&self, digest: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path_of(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        match std::fs::read(self.path_of(digest)) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::Missing(digest.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
