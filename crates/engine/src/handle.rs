//! The engine thread and its handle. The thread owns the [`EngineCore`] (scheduler, runner,
//! backend); everyone else holds a cloneable [`EngineHandle`] that submits requests over a
//! channel and gets back a [`RequestStream`]. Dropping a stream aborts its request and frees
//! its blocks at once. Between steps the thread drains the command channel; with nothing to
//! do it sleeps on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use ingot_tensor::Backend;
use ingot_tokenizer::Tokenizer;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::config::EngineConfig;
use crate::core::{EngineCore, EngineRequest, EngineStats, Sink, SubmitError};
use crate::output::RequestOutput;
use crate::structured::GrammarCell;

enum Command {
    Add(
        Box<EngineRequest>,
        Option<Box<ingot_structured::Constraint>>,
        Sink,
        mpsc::SyncSender<Result<(), SubmitError>>,
    ),
    Abort(u64),
}

struct Shared {
    stats: Mutex<EngineStats>,
    /// Why the engine refuses work for good (a failed device), once it does.
    fault: Arc<OnceLock<String>>,
    alive: AtomicBool,
    next_id: AtomicU64,
    /// Most sequences allowed to wait (each of a request's `n` choices counts); None for
    /// no limit. Checked on the engine thread, so concurrent submissions cannot overshoot.
    max_waiting: Option<usize>,
}

/// A cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Command>,
    shared: Arc<Shared>,
    tokenizer: Arc<Tokenizer>,
    config: EngineConfig,
    vocab_size: usize,
    grammars: GrammarCell,
}

/// The outputs of one request, in order; its choices interleave for `n > 1`. Ends after
/// every choice has reported a finish reason or an error.
pub struct RequestStream {
    id: u64,
    rx: UnboundedReceiver<RequestOutput>,
    tx: Sender<Command>,
    open_choices: usize,
}

impl RequestStream {
    pub fn id(&self) -> u64 {
        self.id
    }

    fn account(&mut self, o: &Option<RequestOutput>) {
        match o {
            Some(o) if o.finish_reason.is_some() || o.error.is_some() => self.open_choices -= 1,
            None => self.open_choices = 0,
            _ => {}
        }
    }

    /// Next output; None once the request has ended.
    pub async fn next(&mut self) -> Option<RequestOutput> {
        if self.open_choices == 0 {
            return None;
        }
        let o = self.rx.recv().await;
        self.account(&o);
        o
    }

    /// Blocking variant for threads outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<RequestOutput> {
        if self.open_choices == 0 {
            return None;
        }
        let o = self.rx.blocking_recv();
        self.account(&o);
        o
    }

    pub fn is_finished(&self) -> bool {
        self.open_choices == 0
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if self.open_choices > 0 {
            let _ = self.tx.send(Command::Abort(self.id));
        }
    }
}

impl EngineHandle {
    /// Starts the engine thread around `core`.
    pub fn start<B: Backend>(
        core: EngineCore<B>,
        max_waiting: Option<usize>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            stats: Mutex::new(core.stats()),
            fault: core.fault_cell(),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(0),
            max_waiting,
        });
        let handle = Self {
            tx,
            shared: shared.clone(),
            tokenizer: core.tokenizer().clone(),
            config: core.config().clone(),
            vocab_size: core.tokenizer().vocab_size(),
            grammars: core.grammar_cell(),
        };
        let thread = std::thread::Builder::new()
            .name("ingot-engine".into())
            .spawn(move || run(core, rx, shared))
            .expect("spawning the engine thread");
        (handle, thread)
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Ok while the engine serves; otherwise why it cannot (stopped, or its device failed).
    pub fn health(&self) -> Result<(), String> {
        if let Some(fault) = self.shared.fault.get() {
            return Err(fault.clone());
        }
        if !self.is_alive() {
            return Err("the engine has stopped".into());
        }
        Ok(())
    }

    /// The queue limit in sequences, if any.
    pub fn max_waiting(&self) -> Option<usize> {
        self.shared.max_waiting
    }

    /// Counters as of the last step.
    pub fn stats(&self) -> EngineStats {
        *lock(&self.shared.stats)
    }

    /// Submits a request; its id is assigned here.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: ingot_scheduler::SamplingParams,
        priority: i32,
    ) -> Result<RequestStream, SubmitError> {
        if !self.is_alive() {
            return Err(SubmitError::EngineStopped);
        }
        // The grammar compiles here, on the caller's thread, not between engine steps.
        let constraint = self.grammars.compile(&params)?.map(Box::new);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let n = params.n;
        let (sink, rx) = unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let req = EngineRequest {
            id,
            prompt,
            params,
            priority,
        };
        self.tx
            .send(Command::Add(Box::new(req), constraint, sink, ack_tx))
            .map_err(|_| SubmitError::EngineStopped)?;
        ack_rx.recv().map_err(|_| SubmitError::EngineStopped)??;
        Ok(RequestStream {
            id,
            rx,
            tx: self.tx.clone(),
            open_choices: n,
        })
    }
}

fn run<B: Backend>(mut core: EngineCore<B>, rx: Receiver<Command>, shared: Arc<Shared>) {
    let publish = |core: &EngineCore<B>| {
        *lock(&shared.stats) = core.stats();
    };
    let handle = |core: &mut EngineCore<B>, cmd: Command| match cmd {
        Command::Add(req, constraint, sink, ack) => {
            let waiting = core.num_waiting();
            let result = match shared.max_waiting {
                Some(max) if core.fault().is_none() && waiting + req.params.n > max => {
                    Err(SubmitError::QueueFull(waiting))
                }
                _ => core.add_compiled(*req, sink, constraint.map(|c| *c)),
            };
            let _ = ack.send(result);
        }
        Command::Abort(id) => core.abort(id),
    };
    // After a fault the thread stays, answering submissions with the fault, so clients and
    // /health learn why; it never steps again.
    loop {
        if !core.has_unfinished() || core.fault().is_some() {
            publish(&core);
            match rx.recv() {
                Ok(cmd) => handle(&mut core, cmd),
                Err(_) => break, // every handle dropped
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            handle(&mut core, cmd);
        }
        if core.fault().is_some() {
            continue;
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.step()));
        if let Err(panic) = result {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            core.fail_all(&format!(
                "the engine hit an internal error and stopped serving (restart the server): {what}"
            ));
        }
        publish(&core);
    }
    shared.alive.store(false, Ordering::Release);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
