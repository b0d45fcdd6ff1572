//! `hello` for WASI 0.3: answers every request with a line of text,
//! written to the body stream after the response head is returned.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let (mut body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
        drop(trailers_tx);
        wit_bindgen::spawn_local(async move {
            let _ = body_tx.write_all(b"Hello from Berth!\n".to_vec()).await;
        });
        Ok(response)
    }
}
