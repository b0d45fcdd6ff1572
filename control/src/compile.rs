//! Compiling uploads off the request path, in two tiers. Winch (the quick
//! engine) compiles a new component several times faster than Cranelift,
//! so an upload is checked, linked and ready to serve sooner; Cranelift then
//! compiles it in the background, into the compile cache, and its faster
//! code replaces Winch's in the routing table. Requests in flight finish on
//! the code they started with.

use berth_runtime::invoke::GuestPre;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fair::{self, FairSlots};
use super::rules::compile_error;
use super::{ControlError, ControlPlane, lock};
use berth_runtime::engine::EngineError;
use berth_runtime::host::{Host, HostError};
use berth_runtime::telemetry::metrics;

/// What an upload was compiled to.
pub(super) enum Tier {
    /// Cranelift's code, in the compile cache.
    Full(GuestPre),
    /// Winch's code, and the bytes for Cranelift to compile next.
    Quick(GuestPre, Vec<u8>),
}

/// Compiles and links components, and keeps what it linked by digest: every
/// version with the same bytes shares one link.
pub(super) struct Compiler {
    host: Arc<Host>,
    /// How long one compile may take (not counting its wait for a slot).
    timeout: Duration,
    linked: Mutex<HashMap<String, GuestPre>>,
    /// One Cranelift compile at a time: compiling a component takes every
    /// core it can get and memory outside any guest's limit.
    full: Arc<FairSlots>,
    /// One quick (Winch) compile at a time, apart from Cranelift's.
    quick: Arc<FairSlots>,
}

impl Compiler {
    pub(super) fn new(host: Arc<Host>, timeout: Duration) -> Self {
        Self {
            host,
            timeout,
            linked: Mutex::new(HashMap::new()),
            full: FairSlots::new(1, fair::QUEUE_PER_TENANT),
            quick: FairSlots::new(1, fair::QUEUE_PER_TENANT),
        }
    }

    /// The component linked for `digest`, if there is one.
    pub(super) fn linked(&self, digest: &str) -> Option<GuestPre> {
        lock(&self.linked).get(digest).cloned()
    }

    pub(super) fn keep(&self, digest: String, pre: GuestPre) {
        lock(&self.linked).insert(digest, pre);
    }

    /// Forgets every link but those of `digests`.
    pub(super) fn retain(&self, digests: &HashSet<String>) {
        lock(&self.linked).retain(|digest, _| digests.contains(digest));
    }

    /// Checks, compiles and links a component, an upload's or one a restart
    /// or a fleet sync finds unlinked: Cranelift's build from the compile
    /// cache when it is there, else Winch's where Winch can, else
    /// Cranelift's. A component Winch refuses (a proposal it lacks) goes to
    /// Cranelift, which has the last word on whether it is valid.
    ///
    /// `tenant` is whose turn the compile takes ([`FairSlots`]); a restart
    /// or a sync compiles as the host itself (an empty name).
    pub(super) async fn tiered(&self, tenant: &str, bytes: Vec<u8>) -> Result<Tier, ControlError> {
        let shared = Arc::new(bytes);
        let input = Arc::clone(&shared);
        // The cache lookup and Winch's compile take one turn of the quick
        // slot together: a deploy waits behind other tenants' compiles once.
        let quick = self
            .off_request_path(&self.quick, tenant, move |host| {
                match host.link_cached(&input) {
                    Some(cached) => Err(cached),
                    None => Ok(host.compile_quick(&input)),
                }
            })
            .await?;
        let quick = match quick {
            Err(cached) => return Ok(Tier::Full(cached.map_err(compile_error)?)),
            Ok(quick) => quick,
        };
        match quick {
            Some(Ok(pre)) => {
                let bytes = Arc::try_unwrap(shared).unwrap_or_else(|arc| (*arc).clone());
                return Ok(Tier::Quick(pre, bytes));
            }
            // Both engines' pools have the same per-component maxima: what
            // Winch's refuses, Cranelift's would too.
            Some(Err(error @ HostError::Engine(EngineError::OverPoolLimit(_)))) => {
                return Err(compile_error(error));
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "Winch refused the component; compiling with Cranelift");
            }
            None => {}
        }
        let (_, pre) = self
            .off_request_path(&self.full, tenant, move |host| host.compile(&shared))
            .await?
            .map_err(compile_error)?;
        Ok(Tier::Full(pre))
    }

    /// Cranelift's build of `bytes`, when `tenant`'s turn comes.
    pub(super) async fn full(
        &self,
        tenant: &str,
        bytes: Vec<u8>,
    ) -> Result<GuestPre, ControlError> {
        let (_, pre) = self
            .off_request_path(&self.full, tenant, move |host| host.compile(&bytes))
            .await?
            .map_err(compile_error)?;
        Ok(pre)
    }

    /// Runs a compile on a blocking thread within the compile deadline, when
    /// `tenant`'s turn for one of `slots` comes: Winch's and Cranelift's
    /// compiles have slots of their own, so a new upload never waits behind
    /// the last one's optimising. The deadline counts the compile, not the
    /// wait for its turn.
    async fn off_request_path<T: Send + 'static>(
        &self,
        slots: &Arc<FairSlots>,
        tenant: &str,
        job: impl FnOnce(&Host) -> T + Send + 'static,
    ) -> Result<T, ControlError> {
        let host = Arc::clone(&self.host);
        let limit = self.timeout;
        let permit = slots
            .acquire(tenant)
            .await
            .map_err(|full| ControlError::Busy(full.to_string()))?;
        // The permit goes with the thread: a compile that outlives its
        // deadline still holds its slot until it ends, so timed-out compiles
        // cannot pile up behind the serving path.
        let work = tokio::task::spawn_blocking(move || {
            let outcome = job(&host);
            drop(permit);
            outcome
        });
        let started = Instant::now();
        match tokio::time::timeout(limit, work).await {
            Err(_) => {
                metrics::compiled("timeout", started.elapsed());
                Err(ControlError::CompileTimeout(limit))
            }
            Ok(Err(join)) => Err(ControlError::Internal(format!(
                "compile task failed: {join}"
            ))),
            Ok(Ok(outcome)) => Ok(outcome),
        }
    }
}

impl ControlPlane {
    /// Compiles `bytes` with Cranelift after the upload has answered, and
    /// serves that code from then on. A failure leaves Winch's code serving.
    pub(super) fn optimise_in_background(&self, tenant: &str, digest: String, bytes: Vec<u8>) {
        let Some(control) = self.me.upgrade() else {
            return;
        };
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            match control.compiler.full(&tenant, bytes).await {
                Ok(pre) => {
                    control.compiler.keep(digest.clone(), pre);
                    match control.rebuild().await {
                        Ok(()) => tracing::info!(%digest, "serving the optimised build"),
                        Err(error) => {
                            tracing::warn!(%digest, %error, "cannot swap in the optimised build")
                        }
                    }
                }
                Err(error @ ControlError::Unprocessable(_)) => {
                    tracing::error!(%digest, %error, "Cranelift refused a component Winch compiled; Winch's code keeps serving")
                }
                Err(error) => {
                    tracing::warn!(%digest, %error, "optimising compile failed; Winch's code keeps serving")
                }
            }
        });
    }
}
