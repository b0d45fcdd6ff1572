//! Streams the request body back as the response body, chunk by chunk, so a
//! body of any size passes through without being held whole. Written
//! directly on the `wasip2` bindings, without any SDK.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

const CHUNK: u64 = 64 * 1024;

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        for (name, value) in request.headers().entries() {
            if name.eq_ignore_ascii_case("content-type") {
                let _ = headers.append(&name, &value);
            }
        }
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));

        let Ok(incoming) = request.consume() else {
            return;
        };
        let (Ok(input), Ok(output)) = (incoming.stream(), body.write()) else {
            return;
        };
        loop {
            match output.blocking_splice(&input, CHUNK) {
                Ok(_) => {}
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    eprintln!("echo: stream failed: {}", e.to_debug_string());
                    return;
                }
            }
        }
        let _ = output.blocking_flush();
        drop(output);
        drop(input);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Echo with_types_in wasip2);
