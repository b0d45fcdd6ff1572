//! Guest bindings for the capability interfaces of Berth's world
//! (`wasi:keyvalue`, `wasi:config`, `wasi:logging`, `berth:service/call`),
//! from the WIT in `wit/`. wasi:http comes through `wstd`, and the pollable
//! of a call is wstd's own, so its reactor can wait on it.

wit_bindgen::generate!({
    path: "../wit",
    world: "berth:service/capabilities",
    with: {
        "wasi:io/poll@0.2.12": wasip2::io::poll,
    },
    generate_all,
});
