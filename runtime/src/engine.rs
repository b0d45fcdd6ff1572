//! The wasmtime engines of a host: the serving engine (Cranelift, pooling
//! allocator, copy-on-write memory images, epoch interruption) with its
//! on-disk compile cache, a quick engine (Winch) for serving a fresh upload
//! while Cranelift compiles it, and the ticker thread that drives both
//! engines' epochs.

use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::limits::{ComponentLimits, EPOCH_TICK};

/// Why the engine could not start or a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the wasmtime engine: {0}")]
    Config(String),
    #[error("cannot use the compile cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotAComponent(&'static str),
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// The component would take more of the instance pool than one
    /// instance may: refused at upload, whatever engine would serve it.
    #[error("{0}")]
    OverPoolLimit(String),
}

/// Engine-wide settings, fixed for the life of the host.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Where compiled artifacts are kept between runs.
    pub cache_dir: PathBuf,
    /// Instances that may exist at once across all services; the pooling
    /// allocator reserves address space for this many up front.
    pub max_instances: u32,
    /// What one component instance may take of the pool.
    pub component: ComponentLimits,
}

/// A content digest, `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentDigest(String);

impl ContentDigest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }
    fn hex(&self) -> &str {
        self.0.trim_start_matches("sha256:")
    }
}

impl std::fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from the compile cache: no compilation happened.
    Hit,
    /// Compiled now, and written to the cache for next time.
    Compiled,
}

/// A compiled component and where it came from.
pub struct LoadedComponent {
    pub component: Component,
    pub digest: ContentDigest,
    pub outcome: CacheOutcome,
}

/// The host's engine, with its epoch ticker and compile cache.
pub struct BerthEngine {
    engine: Engine,
    /// Winch compiles several times faster than Cranelift and its code runs
    /// slower: it serves a new upload until the Cranelift build is ready.
    /// None where Winch cannot run (not x86-64).
    quick: Option<Engine>,
    cache_dir: PathBuf,
    /// Changes whenever compiled code would not be loadable by this engine
    /// (another wasmtime version or other settings), so old artifacts are
    /// never even looked at.
    compat_key: String,
    _ticker: EpochTicker,
}

impl BerthEngine {
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&settings.cache_dir).map_err(|source| EngineError::Cache {
            path: settings.cache_dir.clone(),
            source,
        })?;

        let pooling = pooling_is_available();
        let mut config = base_config();
        if pooling {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                settings.max_instances,
                settings.component,
                ServingTier::Optimised,
            )));
        } else {
            tracing::warn!(
                "cannot reserve address space for the pooling allocator; \
                 falling back to on-demand allocation (slower instantiation)"
            );
        }
        let engine = Engine::new(&config).map_err(|e| EngineError::Config(e.to_string()))?;
        let compat_key = compatibility_key(&engine);
        let quick = quick_engine(pooling.then_some(settings));
        compile_threads_yield_to_serving();
        tracing::info!(
            pooling,
            max_instances = settings.max_instances,
            "engine ready"
        );
        let ticked = std::iter::once(engine.clone())
            .chain(quick.clone())
            .collect();
        Ok(Self {
            _ticker: EpochTicker::spawn(ticked),
            engine,
            quick,
            cache_dir: settings.cache_dir.clone(),
            compat_key,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn quick_engine(&self) -> Option<&Engine> {
        self.quick.as_ref()
    }

    /// Compiles a component with the quick engine, for the moments until
    /// [`load`](Self::load) has it from Cranelift; nothing is cached.
    pub fn compile_quick(&self, bytes: &[u8]) -> Option<Result<Component, EngineError>> {
        let quick = self.quick.as_ref()?;
        Some(
            check_component_header(bytes)
                .and_then(|()| Component::new(quick, bytes).map_err(compile_failure)),
        )
    }

    /// Compiles a component, or loads it from the compile cache when this
    /// engine compiled the same bytes before.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, EngineError> {
        check_component_header(bytes)?;
        let digest = ContentDigest::of(bytes);
        let artifact = self.artifact_path(&digest);
        if let Some(component) = self.cached(&digest, &artifact) {
            return Ok(component);
        }
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            crate::telemetry::metrics::compiled("error", started.elapsed());
            compile_failure(e)
        })?;
        crate::telemetry::metrics::compiled("ok", started.elapsed());
        let compiled = component
            .serialize()
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        write_atomically(&artifact, &compiled).map_err(|source| EngineError::Cache {
            path: artifact.clone(),
            source,
        })?;
        tracing::info!(
            %digest,
            cache = "miss",
            compile_ms = started.elapsed().as_millis() as u64,
            "component compiled"
        );
        Ok(LoadedComponent {
            component,
            digest,
            outcome: CacheOutcome::Compiled,
        })
    }

    /// The component from the compile cache, if this engine compiled the
    /// same bytes before; `None` when it must be compiled. An unusable
    /// cache entry counts as absent.
    pub fn load_cached(&self, bytes: &[u8]) -> Result<Option<LoadedComponent>, EngineError> {
        check_component_header(bytes)?;
        let digest = ContentDigest::of(bytes);
        let artifact = self.artifact_path(&digest);
        Ok(self.cached(&digest, &artifact))
    }

    fn cached(&self, digest: &ContentDigest, artifact: &Path) -> Option<LoadedComponent> {
        if !artifact.is_file() {
            return None;
        }
        match self.deserialize(artifact) {
            Ok(component) => {
                tracing::info!(%digest, cache = "hit", "component loaded from compile cache");
                crate::telemetry::metrics::compile_cache_hit("disk");
                Some(LoadedComponent {
                    component,
                    digest: digest.clone(),
                    outcome: CacheOutcome::Hit,
                })
            }
            Err(error) => {
                tracing::warn!(%digest, %error, "ignoring unusable compile cache entry");
                None
            }
        }
    }

    /// Deletes the compiled artifacts of every component not in `keep`
    /// (digests, `sha256:<hex>`), and any an older engine left; returns how
    /// many files went.
    pub fn remove_artifacts_except(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.cache_dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((hex, key)) = name
                .strip_suffix(".cwasm")
                .and_then(|stem| stem.split_once('-'))
            else {
                continue;
            };
            if key != self.compat_key || !keep.contains(&format!("sha256:{hex}")) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    fn artifact_path(&self, digest: &ContentDigest) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.compat_key))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, artifact: &Path) -> Result<Component, wasmtime::Error> {
        // SAFETY: `deserialize_file` trusts the file to be machine code that
        // wasmtime produced. This one is: Berth wrote it itself, from
        // `Component::serialize`, into its own data directory, by an atomic
        // rename, under a name that carries this engine's compatibility key;
        // wasmtime also checks the header against the engine before use. The
        // data directory is as trusted as the `berth` binary itself.
        unsafe { Component::deserialize_file(&self.engine, artifact) }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.parallel_compilation(true);
    // Proposals a shared host keeps off: threads and shared memory (tier 2
    // in wasmtime, no security fixes backported) and GC (not built in).
    config.wasm_threads(false);
    // The component-model async ABI, which WASI 0.3 components use.
    config.wasm_component_model_async(true);
    config.shared_memory(false);
    config.wasm_gc(false);
    config
}

/// Cranelift compiles on rayon's global pool. Those threads run at a lower
/// CPU priority than the threads that serve requests, so a compile (an
/// upload's optimising build, above all, which runs after the version
/// already serves) takes the cores the serving path leaves idle instead of
/// slowing requests down. Nothing waits on Cranelift to start serving a
/// version: uploads and synced versions serve from Winch's build first,
/// compiled at normal priority on the caller's thread.
fn compile_threads_yield_to_serving() {
    rayon::broadcast(|_| lower_this_threads_priority());
}

#[allow(unsafe_code)]
fn lower_this_threads_priority() {
    // SAFETY: setpriority(2) takes plain integers and touches no memory of
    // ours; on Linux, PRIO_PROCESS with `who` 0 applies to the calling
    // thread only. Failing (not permitted) leaves the priority unchanged.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Why wasmtime refused a component: over the pool's per-component maxima
/// (which both engines check the same way) or not valid at all.
fn compile_failure(error: wasmtime::Error) -> EngineError {
    let message = format!("{error:#}");
    if message.contains("pooling allocator") {
        EngineError::OverPoolLimit(format!(
            "the component does not fit one instance slot of this host's pool: {message}; \
             the operator can raise --max-memories-per-component, --max-tables-per-component \
             or --max-core-instances-per-component"
        ))
    } else {
        EngineError::Compile(message)
    }
}

/// The Winch engine. Where the serving engine has a pool, Winch has one of
/// the same shape: it serves new uploads, and every version after a
/// restart, until Cranelift's build replaces them, so it must bound what an
/// instance takes exactly as the serving engine does (and refuse at compile
/// time what the serving engine's pool would).
fn quick_engine(pooled: Option<&EngineSettings>) -> Option<Engine> {
    let mut config = base_config();
    config.strategy(Strategy::Winch);
    if let Some(settings) = pooled {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
            settings.max_instances,
            settings.component,
            ServingTier::Quick,
        )));
    }
    // Winch compiles each function quickly on its own; threads would only
    // contend with the Cranelift compile that follows.
    config.parallel_compilation(false);
    match Engine::new(&config) {
        Ok(engine) => Some(engine),
        Err(error) => {
            tracing::info!(%error, "no quick (Winch) compiles: every upload waits for Cranelift");
            None
        }
    }
}

/// Which engine a pool is for: the quick engine's keeps fewer warm slots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServingTier {
    Optimised,
    Quick,
}

/// The pool: `max_instances` slots, each with room for the per-component
/// maxima. Every total is the per-component maximum times the instances,
/// so the pool cannot run out of memories, tables or core instances before
/// it runs out of instances, and the instance slots (metered per tenant)
/// are the only thing a request can exhaust.
fn pooling_config(
    max_instances: u32,
    component: ComponentLimits,
    tier: ServingTier,
) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances);
    pool.max_core_instances_per_component(component.core_instances);
    pool.max_memories_per_component(component.memories);
    pool.max_tables_per_component(component.tables);
    pool.total_core_instances(max_instances.saturating_mul(component.core_instances));
    pool.total_memories(max_instances.saturating_mul(component.memories));
    pool.total_tables(max_instances.saturating_mul(component.tables));
    pool.total_stacks(max_instances);
    // Resetting a slot by rewriting the pages a request dirtied (found with
    // PAGEMAP_SCAN on Linux 6.7+) is much cheaper than madvise and the page
    // faults that follow it: `make bench` measured 1.8× the throughput.
    pool.linear_memory_keep_resident(4 << 20);
    pool.table_keep_resident(64 << 10);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    // Warm slots keep resident memory; the quick engine serves only until
    // Cranelift's builds are ready, so it keeps few.
    let warm = match tier {
        ServingTier::Optimised => 100,
        ServingTier::Quick => 10,
    };
    pool.max_unused_warm_slots(max_instances.min(warm));
    pool
}

/// The pooling allocator reserves many gigabytes of address space; some
/// machines (39-bit address spaces, `ulimit -v`) cannot. Try a reservation of
/// the size it would need before committing to it.
fn pooling_is_available() -> bool {
    use wasmtime::{Memory, MemoryType, Store};
    const BITS_TO_TEST: u32 = 42;
    let mut config = Config::new();
    config.wasm_memory64(true);
    config.memory_reservation(1 << BITS_TO_TEST);
    let Ok(engine) = Engine::new(&config) else {
        return false;
    };
    let mut store = Store::new(&engine, ());
    let ty = MemoryType::new64(0, Some(1 << (BITS_TO_TEST - 16)));
    Memory::new(&mut store, ty).is_ok()
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Refuses, with a clear reason, bytes that are not a binary component.
fn check_component_header(bytes: &[u8]) -> Result<(), EngineError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let text = bytes.iter().take(64).find(|b| !b.is_ascii_whitespace());
        return Err(EngineError::NotAComponent(if text == Some(&b'(') {
            "this is WebAssembly text; Berth needs a binary component (wasm32-wasip2)"
        } else {
            "not a WebAssembly binary"
        }));
    }
    if bytes[4..8] != COMPONENT_VERSION {
        return Err(EngineError::NotAComponent(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)",
        ));
    }
    Ok(())
}

/// Writes a file so that readers see either nothing or all of it: a temporary
/// file in the same directory, fsync, then rename over the final name.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = std::fs::File::open(dir) {
        // Makes the rename itself durable; best effort where directories
        // cannot be opened for syncing.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`], which is what lets a
/// running guest be paused, yielded or stopped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn spawn(engines: Vec<Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("berth-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!("cannot start the epoch thread: guest deadlines will not be enforced");
        }
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_core_modules_and_text() {
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            check_component_header(core),
            Err(EngineError::NotAComponent(m)) if m.contains("core")
        ));
        assert!(matches!(
            check_component_header(b"(component)"),
            Err(EngineError::NotAComponent(m)) if m.contains("text")
        ));
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
