//! Guest bindings for the capability interfaces of Berth's world
//! (`wasi:keyvalue`, `wasi:config`, `wasi:logging`), from the WIT in `wit/`.
//! wasi:http comes through `wstd`.

wit_bindgen::generate!({
    path: "../wit",
    world: "berth:service/capabilities",
    generate_all,
});
