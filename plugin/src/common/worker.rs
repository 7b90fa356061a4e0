//! The queue between the sink pad and the src-pad task.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;

use super::*;

/// Buffers, events and fills queued between the sink pad and the src task.
const MAX_ITEMS: usize = 32;

pub enum Item {
    Buffer(gst::Buffer),
    Event(gst::Event),
    Fill(Box<FillJob>),
    Plan(Box<PlanJob>),
}

/// How a src-task item failed: the flow return handed back upstream and,
/// for a failed fill (or a panic), the error to post. The flow return is
/// recorded before posting, so whoever sees the error message and pushes
/// again is refused with it.
pub(crate) struct TaskError {
    pub(crate) flow: gst::FlowError,
    pub(crate) message: Option<String>,
}

struct Queue {
    items: VecDeque<Item>,
    flushing: bool,
    /// Last flow return of the src task, handed back to upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The task is working on an item it took off the queue.
    busy: bool,
    /// Someone waits for the queue to drain: fills stop waiting for context.
    draining: usize,
}

/// Items flow from the sink pad's streaming thread to the src-pad task in
/// order; generation runs on the task so upstream is never blocked by it
/// (beyond the queue's bound).
pub struct Worker {
    queue: Mutex<Queue>,
    cond: Condvar,
    cancel: AtomicBool,
    /// Fills against a live stream: measured, and held when late.
    pub pace: Pace,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                busy: false,
                draining: 0,
            }),
            cond: Condvar::new(),
            cancel: AtomicBool::new(true),
            pace: Pace::default(),
        }
    }
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item for the src task, waiting while the queue is full.
    /// Returns the task's last flow error, if any.
    pub fn enqueue(&self, item: Item) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut q = self.lock();
        loop {
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            q.flow?;
            if q.items.len() < MAX_ITEMS {
                break;
            }
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.items.push_back(item);
        self.cond.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// FLUSH_START / deactivation: drop everything queued, wake everyone,
    /// make a running fill stop at its next frame.
    pub fn start_flushing(&self) {
        let mut q = self.lock();
        q.flushing = true;
        q.items.clear();
        self.cancel.store(true, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// FLUSH_STOP / activation: an empty queue accepting data again.
    pub fn stop_flushing(&self) {
        let mut q = self.lock();
        q.flushing = false;
        q.items.clear();
        q.flow = Ok(gst::FlowSuccess::Ok);
        self.cancel.store(false, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// Waits until everything queued has been pushed (serialized queries).
    pub fn wait_drained(&self) {
        let mut q = self.lock();
        q.draining += 1;
        self.cond.notify_all();
        while (!q.items.is_empty() || q.busy) && !q.flushing && q.flow.is_ok() {
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.draining -= 1;
    }

    /// Starts the src-pad task that empties the queue.
    pub fn start_task(self: &Arc<Self>, element: &gst::Element, srcpad: &gst::Pad) -> Result<(), glib::BoolError> {
        let worker = self.clone();
        let element = element.downgrade();
        let pad = srcpad.downgrade();
        srcpad.start_task(move || {
            let (Some(element), Some(pad)) = (element.upgrade(), pad.upgrade()) else { return };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| worker.iterate(&element, &pad)));
            if r.is_err() {
                let failed = TaskError {
                    flow: gst::FlowError::Error,
                    message: Some("weft: internal error (panic) in the src task".into()),
                };
                worker.item_done(&element, &pad, Err(failed));
            }
        })
    }

    /// One iteration of the src task: takes one item and pushes it.
    fn iterate(&self, element: &gst::Element, srcpad: &gst::Pad) {
        let item = {
            let mut q = self.lock();
            loop {
                if q.flushing {
                    drop(q);
                    let _ = srcpad.pause_task();
                    return;
                }
                if let Some(Item::Fill(job)) = q.items.front() {
                    let want = job.want_after;
                    if want > 0 {
                        let mut have = 0;
                        let mut closed = q.draining > 0 || q.items.len() >= MAX_ITEMS;
                        for it in q.items.iter().skip(1) {
                            if let Item::Buffer(_) = it {
                                have += 1;
                                if have >= want {
                                    break;
                                }
                            } else {
                                closed = true;
                                break;
                            }
                        }
                        if have < want && !closed {
                            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
                            continue;
                        }
                        let after: Vec<gst::Buffer> = q
                            .items
                            .iter()
                            .skip(1)
                            .map_while(|it| if let Item::Buffer(b) = it { Some(b.clone()) } else { None })
                            .take(want)
                            .collect();
                        if let Some(Item::Fill(job)) = q.items.front_mut() {
                            job.after = after;
                        }
                    }
                }
                if let Some(item) = q.items.pop_front() {
                    q.busy = true;
                    self.cond.notify_all();
                    break item;
                }
                q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };

        let res = match item {
            Item::Buffer(b) => srcpad.push(b).map_err(|flow| TaskError { flow, message: None }),
            Item::Event(e) => {
                let is_eos = e.type_() == gst::EventType::Eos;
                if let gst::EventView::Segment(s) = e.view()
                    && let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>()
                {
                    self.pace.set_segment(seg);
                }
                if !srcpad.push_event(e) && is_eos {
                    gst::debug!(CAT, obj = element, "EOS not handled downstream");
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Item::Fill(job) => match self.pace.late(element, job.start, job.dur, job.n) {
                Some(late) if !job.before.is_empty() || !job.after.is_empty() => {
                    self.hold_late(element, srcpad, &job, late)
                }
                _ => {
                    let n = job.n;
                    self.measured(element, n, || job.run(element, srcpad, &self.cancel))
                }
            },
            Item::Plan(mut job) => {
                let (start, n) = (job.slots.first().map(|s| s.pts), job.slots.len());
                match start.filter(|_| !job.hold).and_then(|s| self.pace.late(element, s, job.dur, n)) {
                    Some(late) => {
                        gst::warning!(
                            CAT,
                            obj = element,
                            "late: {} frame(s) at {} would be ready {} after the original after them is due \
                             (generation takes about {}): holding the last frame",
                            n,
                            start.display(),
                            late.by,
                            late.estimate
                        );
                        job.hold = true;
                        job.reason = "late";
                        job.run(element, srcpad, &self.cancel)
                    }
                    None if job.hold => job.run(element, srcpad, &self.cancel),
                    None => self.measured(element, n, || job.run(element, srcpad, &self.cancel)),
                }
            }
        };
        self.item_done(element, srcpad, res);
    }

    /// Runs a fill of `n` frames, recording its generation time (pushing
    /// left out) for the pacing of live streams.
    fn measured(
        &self,
        element: &gst::Element,
        n: usize,
        run: impl FnOnce() -> Result<gst::FlowSuccess, TaskError>,
    ) -> Result<gst::FlowSuccess, TaskError> {
        let t0 = std::time::Instant::now();
        take_push_time();
        if let Some(d) = test_fill_delay(n) {
            std::thread::sleep(d);
        }
        let res = run();
        let generation = t0.elapsed().saturating_sub(take_push_time());
        if res.is_ok() {
            self.pace.record(element, n, generation);
        }
        res
    }

    /// A fill that would be late: the nearest frame before the run (after
    /// it at the start of the stream) is repeated for every frame of it, and
    /// a `weft-fill` message says `method=hold, reason=late`.
    fn hold_late(
        &self,
        element: &gst::Element,
        srcpad: &gst::Pad,
        job: &FillJob,
        late: Late,
    ) -> Result<gst::FlowSuccess, TaskError> {
        let t0 = std::time::Instant::now();
        let held = job.before.last().or(job.after.first()).expect("a frame to hold");
        gst::warning!(
            CAT,
            obj = element,
            "late: {} frame(s) at {} would be ready {} after the original after them is due \
             (generation takes about {}): holding the last frame",
            job.n,
            job.start,
            late.by,
            late.estimate
        );
        for i in 0..job.n {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(TaskError { flow: gst::FlowError::Flushing, message: None });
            }
            // A new buffer sharing the held frame's memory.
            let mut b = held.copy();
            mark_generated(b.make_mut(), job.start + job.dur * i as u64, job.dur, "hold", i);
            srcpad.push(b).map_err(|flow| TaskError { flow, message: None })?;
        }
        post_fill_message(element, job.start, job.n, "hold", "late", job.dur, Some(t0.elapsed().as_secs_f64()));
        Ok(gst::FlowSuccess::Ok)
    }

    /// The task is done with an item. On failure the flow return is recorded
    /// for upstream first; only then is the error posted and the task paused.
    fn item_done(&self, element: &gst::Element, srcpad: &gst::Pad, res: Result<gst::FlowSuccess, TaskError>) {
        let mut q = self.lock();
        q.busy = false;
        if let Err(TaskError { flow: err, message }) = res {
            let flushing = q.flushing;
            q.flow = Err(err);
            self.cond.notify_all();
            drop(q);
            gst::debug!(CAT, obj = element, "src task pausing: {:?}", err);
            if let Some(msg) = message {
                gst::element_error!(element, gst::StreamError::Failed, ("{}", msg));
            } else if !flushing && matches!(err, gst::FlowError::NotLinked | gst::FlowError::NotNegotiated) {
                gst::element_error!(
                    element,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped, reason {:?}", err]
                );
                let _ = srcpad.push_event(gst::event::Eos::new());
            }
            let _ = srcpad.pause_task();
        } else {
            self.cond.notify_all();
        }
    }
}

/// Shared src-pad activation: start the task on activation, stop and join it
/// on deactivation.
pub fn activate_src(
    worker: &Arc<Worker>,
    element: &gst::Element,
    pad: &gst::Pad,
    mode: gst::PadMode,
    active: bool,
) -> Result<(), gst::LoggableError> {
    if mode != gst::PadMode::Push {
        return Err(gst::loggable_error!(CAT, "weft elements only work in push mode"));
    }
    if active {
        worker.stop_flushing();
        worker.start_task(element, pad).map_err(|e| gst::loggable_error!(CAT, "cannot start the src task: {}", e))
    } else {
        worker.start_flushing();
        worker.pace.reset();
        pad.stop_task().map_err(|e| gst::loggable_error!(CAT, "cannot stop the src task: {}", e))
    }
}

/// Shared FLUSH_START / FLUSH_STOP handling. Returns whether the event was
/// forwarded downstream.
pub fn handle_flush(worker: &Arc<Worker>, element: &gst::Element, srcpad: &gst::Pad, event: gst::Event) -> bool {
    match event.view() {
        gst::EventView::FlushStart(_) => {
            worker.start_flushing();
            let ret = srcpad.push_event(event);
            let _ = srcpad.pause_task();
            ret
        }
        gst::EventView::FlushStop(_) => {
            worker.stop_flushing();
            let ret = srcpad.push_event(event);
            if let Err(e) = worker.start_task(element, srcpad) {
                gst::error!(CAT, obj = element, "cannot restart the src task: {}", e);
                return false;
            }
            ret
        }
        _ => unreachable!("handle_flush called with {:?}", event.type_()),
    }
}

/// LATENCY query on a src pad of an element that paces its fills:
/// upstream's latency plus `added` and, when upstream is live, the worst
/// generation time of one fill ([`Pace::allowance`]).
pub fn query_latency_paced(
    sinkpad: &gst::Pad,
    query: &mut gst::QueryRef,
    added: gst::ClockTime,
    pace: &Pace,
) -> bool {
    let gst::QueryViewMut::Latency(q) = query.view_mut() else { return false };
    let mut upstream = gst::query::Latency::new();
    if !sinkpad.peer_query(&mut upstream) {
        return false;
    }
    let (live, min, max) = upstream.result();
    let added = added + pace.allowance(live);
    q.set(live, min + added, max.map(|m| m + added));
    true
}

/// LATENCY query on a src pad: upstream's latency plus `added`.
pub fn query_latency(sinkpad: &gst::Pad, query: &mut gst::QueryRef, added: gst::ClockTime) -> bool {
    let gst::QueryViewMut::Latency(q) = query.view_mut() else { return false };
    let mut upstream = gst::query::Latency::new();
    if !sinkpad.peer_query(&mut upstream) {
        return false;
    }
    let (live, min, max) = upstream.result();
    q.set(live, min + added, max.map(|m| m + added));
    true
}

