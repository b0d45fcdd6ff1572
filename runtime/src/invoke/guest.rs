//! The two worlds a service may be written for, behind one face: a
//! `wasi:http/incoming-handler@0.2` component (called once per request,
//! the response set through an out-parameter) or a `wasi:http/handler@0.3`
//! one (the component-model async ABI: the handler returns the response,
//! and the instance's event loop runs on while the guest writes the body).

use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use super::HostState;
use crate::body::ResponseBody;
use crate::error::RequestError;

/// A component could not be linked against Berth's world.
#[derive(Debug, thiserror::Error)]
#[error("component cannot run on Berth: {0}")]
pub struct LinkError(pub(super) String);

fn link_error(e: wasmtime::Error) -> LinkError {
    LinkError(format!("{e:#}"))
}

/// The linker for Berth's world, built once per host: WASI 0.2 and 0.3
/// (with no filesystem, environment or network granted), `wasi:http` of
/// both, and the capability interfaces (`wasi:keyvalue`, `wasi:config`,
/// `wasi:logging`, Berth's `call`), which a 0.3 component imports as it
/// would under 0.2.
pub struct WorldLinker {
    linker: Linker<HostState>,
}

impl WorldLinker {
    pub fn new(engine: &Engine) -> Result<Self, LinkError> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_error)?;
        crate::capabilities::fields::add_to_linker(&mut linker).map_err(link_error)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(link_error)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(link_error)?;
        crate::capabilities::add_to_linker(&mut linker).map_err(link_error)?;
        Ok(Self { linker })
    }

    /// Links a component once, so that each request only instantiates it;
    /// which world it serves is found here, at upload.
    pub fn prepare(&self, component: &Component) -> Result<GuestPre, LinkError> {
        let pre = self.linker.instantiate_pre(component).map_err(link_error)?;
        if let Ok(p2) = ProxyPre::new(pre.clone()) {
            return Ok(GuestPre::P2(p2));
        }
        ServicePre::new(pre).map(GuestPre::P3).map_err(|_| {
            LinkError(
                "it exports neither wasi:http/incoming-handler@0.2.x nor wasi:http/handler@0.3.x"
                    .to_string(),
            )
        })
    }
}

/// A linked component, ready to instantiate.
#[derive(Clone)]
pub enum GuestPre {
    P2(ProxyPre<HostState>),
    P3(ServicePre<HostState>),
}

impl GuestPre {
    pub fn engine(&self) -> &Engine {
        match self {
            Self::P2(pre) => pre.engine(),
            Self::P3(pre) => pre.engine(),
        }
    }

    /// The world the component serves, as `berth service` and logs name it.
    pub fn world(&self) -> &'static str {
        match self {
            Self::P2(_) => "wasi:http@0.2",
            Self::P3(_) => "wasi:http@0.3",
        }
    }

    pub(super) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<GuestInstance> {
        Ok(match self {
            Self::P2(pre) => GuestInstance::P2(pre.instantiate_async(store).await?),
            Self::P3(pre) => GuestInstance::P3(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance of a linked component.
pub enum GuestInstance {
    P2(Proxy),
    P3(Service),
}

/// Where the guest's response head goes: the invoker waits on the other
/// end. Both worlds' error codes arrive as 0.2's (only their presence and
/// a debug line matter to the host).
pub(super) type HeadSender = oneshot::Sender<Result<http::Response<ResponseBody>, ErrorCode>>;

/// One request, readied for the guest's world.
pub(super) enum GuestCall {
    P2 {
        request: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    },
    P3 {
        /// Boxed: a request head is many times the size of two handles.
        request: Box<http::Request<ResponseBody>>,
        head: HeadSender,
    },
}

impl GuestCall {
    /// Puts the request where the guest's world takes it from.
    /// The body is boxed only for 0.3, whose request type takes a boxed
    /// one; 0.2's takes it as it comes.
    pub(super) fn new<B>(
        store: &mut Store<HostState>,
        instance: &GuestInstance,
        request: http::Request<B>,
        head: HeadSender,
    ) -> Result<Self, RequestError>
    where
        B: http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    {
        match instance {
            GuestInstance::P2(_) => {
                let mut http = store.data_mut().http();
                let request = http
                    .new_incoming_request(Scheme::Http, request)
                    .map_err(|_| RequestError::BadRequest("missing Host header"))?;
                let outparam = http
                    .new_response_outparam(head)
                    .map_err(|_| RequestError::Instantiate)?;
                Ok(Self::P2 { request, outparam })
            }
            GuestInstance::P3(_) => Ok(Self::P3 {
                request: Box::new(request.map(BodyExt::boxed_unsync)),
                head,
            }),
        }
    }

    /// Runs the guest's handler for this request to its end.
    pub(super) async fn run(
        self,
        store: &mut Store<HostState>,
        instance: &GuestInstance,
    ) -> wasmtime::Result<()> {
        match (self, instance) {
            (Self::P2 { request, outparam }, GuestInstance::P2(proxy)) => {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, request, outparam)
                    .await
            }
            (Self::P3 { request, head }, GuestInstance::P3(service)) => {
                run_p3(store, service, *request, head).await
            }
            _ => Err(wasmtime::format_err!(
                "a request readied for one world was given to the other"
            )),
        }
    }
}

/// Reports how the host's side of a 0.3 request body ended.
type RequestIo =
    std::pin::Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send + 'static>>;

/// A 0.3 request: the handler returns the response head; its body streams
/// from the guest while the instance's event loop runs, which it does until
/// the guest's last task ends.
async fn run_p3(
    store: &mut Store<HostState>,
    service: &Service,
    request: http::Request<ResponseBody>,
    head: HeadSender,
) -> wasmtime::Result<()> {
    store
        .run_concurrent(async move |accessor| {
            let (request, request_io) = accessor.with(|mut access| {
                let http = access.data_mut().http();
                let (request, io) = wasmtime_wasi_http::p3::Request::from_http(http.hooks, request);
                // Boxed at once: the future is 'static, but its opaque type
                // names the borrow of the hooks.
                let io: RequestIo = Box::pin(io);
                (request, io)
            });
            match service.handle(accessor, request).await? {
                Ok(response) => {
                    let response =
                        accessor.with(|mut access| response.into_http(&mut access, request_io))?;
                    let _ = head.send(Ok(response.map(|b| b.boxed_unsync())));
                }
                Err(code) => {
                    let _ = head.send(Err(ErrorCode::InternalError(Some(format!("{code:?}")))));
                }
            }
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            Ok(())
        })
        .await?
}
