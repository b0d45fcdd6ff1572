//! A stand-in OpenTelemetry collector: accepts OTLP/HTTP protobuf trace
//! exports on 127.0.0.1 and keeps the spans it decodes.

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the collector received.
#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    /// `POST /path content-type` of each export request.
    pub requests: Vec<String>,
    /// The resource attributes' `service.name` of each export.
    pub service_names: Vec<String>,
}

pub struct Collector {
    pub endpoint: String,
    pub received: Arc<Mutex<Received>>,
}

impl Collector {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Received::default()));
        let keep = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    let _ = serve_connection(stream, keep).await;
                });
            }
        });
        Ok(Self { endpoint, received })
    }

    pub fn spans(&self) -> Vec<Span> {
        self.received
            .lock()
            .map(|r| r.spans.clone())
            .unwrap_or_default()
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    received: Arc<Mutex<Received>>,
) -> Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().context("bad length")?,
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        let export = ExportTraceServiceRequest::decode(body.as_slice())?;
        if let Ok(mut r) = received.lock() {
            let path = request_line.split_whitespace().take(2).collect::<Vec<_>>();
            r.requests
                .push(format!("{} {content_type}", path.join(" ")));
            for resource in export.resource_spans {
                let name = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                r.service_names.push(name);
                for scope in resource.scope_spans {
                    r.spans.extend(scope.spans);
                }
            }
        }
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}
