//! Answers with the `greeting` config value read through
//! `wasi:config/store@0.2.0-draft-2024-09-27`, the name Spin's guests import,
//! to show such a component runs on Berth unchanged. HTTP on raw `wasip2`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "berth:service/config-draft",
    generate_all,
});

use wasi::config0_2_0_draft_2024_09_27::store;

struct SpinConfig;

impl Guest for SpinConfig {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let text = match store::get("greeting") {
            Ok(Some(value)) => value,
            Ok(None) => "unset".to_string(),
            Err(_) => "error".to_string(),
        };
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(output) = body.write() {
            let _ = output.blocking_write_and_flush(text.as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(SpinConfig with_types_in wasip2);
