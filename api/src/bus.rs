//! The event bus: committed events, fanned out to live subscribers.
//!
//! Services publish the events of a transaction only after it commits, so subscribers never see
//! a change that was rolled back. Delivery here is in-process and best-effort; the event log in
//! the database stays the source of truth, and subscribers resume from it by cursor.

use std::sync::Arc;

use entity::event;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged (and must
/// resume from the log).
const CHANNEL_CAPACITY: usize = 4096;

/// Fans committed events out to this instance's subscribers.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<event::Model>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { sender }
    }

    /// Publishes events that have been committed, in log order.
    pub fn publish(&self, events: Vec<event::Model>) {
        for event in events {
            // No subscriber is not an error: the event is in the log.
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// A live feed of events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<event::Model>> {
        self.sender.subscribe()
    }
}
