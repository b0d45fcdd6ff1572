//! Publishes through `wasi:messaging@0.2.0-draft`'s producer, on raw
//! `wasip2`:
//!
//! - `POST .../send/{topic}`: sends the body as a message to `{topic}`, with
//!   content type `application/json` and the request's `x-type`, `x-id` and
//!   `x-key` headers as the metadata `ce-type`, `ce-id` and
//!   `partition-key`; answers 202, or 502 with the error;
//! - `POST .../big/{mib}`: builds a message of `mib` MiB (the host refuses
//!   more than 1 MiB with a trap).

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "berth:service/messaging",
    generate_all,
});

use wasi::messaging::producer;
use wasi::messaging::types::{Client, Message};

struct Publisher;

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(output) = body.write() {
        let _ = output.blocking_write_and_flush(text.as_bytes());
    }
    let _ = OutgoingBody::finish(body, None);
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(input) = body.stream() {
        while let Ok(chunk) = input.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn send(request: &IncomingRequest, topic: &str) -> (u16, String) {
    let client = match Client::connect("default") {
        Ok(client) => client,
        Err(e) => return (502, format!("connect: {e:?}")),
    };
    let message = Message::new(&read_body(request));
    message.set_content_type("application/json");
    for (from, to) in [
        ("x-type", "ce-type"),
        ("x-id", "ce-id"),
        ("x-key", "partition-key"),
    ] {
        if let Some(value) = header(request, from) {
            message.add_metadata(to, &value);
        }
    }
    match producer::send(&client, topic, message) {
        Ok(()) => (202, "sent".into()),
        Err(e) => (502, format!("send: {e:?}")),
    }
}

impl Guest for Publisher {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let start = segments
            .iter()
            .position(|s| *s == "send" || *s == "big")
            .unwrap_or(segments.len());
        match &segments[start..] {
            ["send", topic] => {
                let (status, text) = send(&request, topic);
                answer(out, status, &text);
            }
            ["big", mib] => {
                let mib: usize = mib.parse().unwrap_or(0);
                let message = Message::new(&vec![b'x'; mib << 20]);
                answer(out, 200, &format!("{} bytes", message.data().len()));
            }
            _ => answer(out, 404, "no such path"),
        }
    }
}

wasip2::http::proxy::export!(Publisher);
