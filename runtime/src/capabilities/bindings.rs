//! Host bindings for the capability interfaces of Berth's world, generated
//! from the vendored WIT in `wit/`.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "berth:service/capabilities",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::capabilities::kv_handles::BucketHandle,
            "wasi:keyvalue/atomics.cas": crate::capabilities::kv_handles::CasHandle,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "berth:service/call.pending-call": crate::capabilities::pending_call::PendingCall,
        },
    });
}

mod config_draft {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "berth:service/config-draft",
        imports: { default: async | trappable },
    });
}

mod messaging {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "berth:service/messaging",
        imports: { default: async | trappable },
        with: {
            "wasi:messaging/types.client": crate::capabilities::messaging_handles::MessagingClient,
            "wasi:messaging/types.message": crate::capabilities::messaging_handles::OutgoingMessage,
        },
    });
}

mod keyvalue_draft {
    wasmtime::component::bindgen!({
        path: "../wit/compat",
        world: "berth:compat/keyvalue-draft",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::capabilities::kv_handles::BucketHandle,
        },
    });
}

pub use config_draft::wasi::config0_2_0_draft_2024_09_27::store as config_draft_store;
pub use generated::berth::service::call as service_call;
pub use generated::wasi::config0_2_0_rc_1::store as config_store;
pub use generated::wasi::keyvalue::{atomics, batch, store as kv_store};
pub use generated::wasi::logging::logging;
pub use keyvalue_draft::wasi::keyvalue::{
    atomics as draft_atomics, batch as draft_batch, store as draft_store,
};
pub use messaging::wasi::messaging::{producer as messaging_producer, types as messaging_types};
