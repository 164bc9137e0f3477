//! One execution per distinct subscription, shared by every socket that asked for it.
//!
//! Ten thousand sockets following the review queue as eight reviewers ask for at most a few
//! dozen different things. Each distinct subscription (the same viewer, document, operation
//! name and variables) runs once, in a [`Group`]: its payloads are resolved and serialised once
//! per event, and each member socket only wraps the shared payload in its own `next` message.
//! A socket holds a few bytes per subscription instead of a live GraphQL stream of its own.
//!
//! Sharing is exact because a member joins at its own start mark: the group's stream delivers
//! every event above the group's mark in log order, and a member receives those above *its*
//! mark, which is the bus's high-water mark when its `subscribe` arrived, read under the group's
//! lock. The sequencer raises the high-water mark before it hands an event to any feed (see
//! [`crate::bus`]), so an event a group delivered before a member joined is at or below that
//! member's mark, and one delivered after reaches it.
//!
//! A subscription that replays from a cursor (`after`) runs alone: its history is its own.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use futures_util::{
    StreamExt,
    future::{AbortHandle, Abortable},
    stream::BoxStream,
};
use tokio::sync::Notify;

use crate::auth::{Principal, Role};

/// Deliveries a socket may have waiting before it counts as too slow to read (it is closed).
pub const INBOX_LIMIT: usize = 512;

/// What a socket is told about one of its operations.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A `next` message's payload, serialised once for every member.
    Next(Arc<str>),
    /// An `error` message's payload (the request failed before it ran); the operation is over.
    Error(Arc<str>),
    /// The operation ended (`complete`).
    Complete,
}

/// A delivery for operation `operation` of a socket.
#[derive(Debug)]
pub struct Delivery {
    pub operation: u64,
    pub message: Outgoing,
}

/// A socket's mailbox: what its groups delivered and it has not sent yet.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Delivery>>,
    ready: Notify,
    overflowed: AtomicBool,
}

impl Inbox {
    fn push(&self, delivery: Delivery) {
        let mut queue = lock(&self.queue);
        if queue.len() >= INBOX_LIMIT {
            self.overflowed.store(true, Ordering::Release);
        } else {
            queue.push_back(delivery);
        }
        drop(queue);
        self.ready.notify_one();
    }

    /// Waits until something was delivered (returns at once if it already was).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Everything delivered so far, in order.
    pub fn take(&self) -> VecDeque<Delivery> {
        std::mem::take(&mut *lock(&self.queue))
    }

    /// Whether deliveries were dropped because the socket did not keep up.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// What makes two subscriptions the same: who asks, and exactly what. Who asks is the user and
/// their role, which is all that a subscription's payloads are authorized by; the credential
/// is not part of it, so the sockets of one user's sessions and API tokens share. Each socket
/// still checks its own credential and is closed alone when that stops being valid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    user_id: uuid::Uuid,
    role: Role,
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON text, in the order the client sent them.
    variables: String,
}

impl GroupKey {
    /// The key of a subscription that can be shared, or `None` when it must run alone (it
    /// replays from a cursor).
    pub fn of(
        principal: &Principal,
        query: &str,
        document: Option<&ExecutableDocument>,
        operation_name: Option<&str>,
        variables: Option<&serde_json::Value>,
    ) -> Option<Self> {
        let document = document?;
        // Only subscriptions are shared: a query or a mutation sent over the socket runs once
        // for the socket that sent it, with that socket's own credential.
        let only_subscriptions = document
            .operations
            .iter()
            .all(|(_, operation)| operation.node.ty == OperationType::Subscription);
        if !only_subscriptions || replays_history(document) || !one_root_field(document) {
            return None;
        }
        Some(Self {
            user_id: principal.user_id,
            role: principal.role,
            query: query.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            variables: variables.map(ToString::to_string).unwrap_or_default(),
        })
    }
}

/// Whether a root field of any subscription in the document takes `after` (a value, a variable,
/// even `null`): such a subscription starts from its own point in the log.
fn replays_history(document: &ExecutableDocument) -> bool {
    fn visit(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
        // Fragments cannot nest without bound once validated; the depth guards the unvalidated.
        if depth > 32 {
            return true;
        }
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => field
                .node
                .arguments
                .iter()
                .any(|(name, _)| name.node.as_str() == "after"),
            Selection::InlineFragment(fragment) => {
                visit(document, &fragment.node.selection_set.node, depth + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .is_none_or(|fragment| {
                    visit(document, &fragment.node.selection_set.node, depth + 1)
                }),
        })
    }
    document
        .operations
        .iter()
        .any(|(_, operation)| visit(document, &operation.node.selection_set.node, 0))
}

/// Whether every operation of the document selects exactly one root field, directly. The
/// transport learns which event a response is about from the one field's stream; with several
/// root fields their streams interleave and a response could not be matched to its event.
fn one_root_field(document: &ExecutableDocument) -> bool {
    document.operations.iter().all(|(_, operation)| {
        let items = &operation.node.selection_set.node.items;
        items.len() == 1 && matches!(items[0].node, Selection::Field(_))
    })
}

/// One member socket's operation.
struct Member {
    inbox: Arc<Inbox>,
    operation: u64,
    /// Events at or below this id happened before the member subscribed.
    after: i64,
}

struct GroupState {
    members: Vec<Member>,
    finished: bool,
    stop: Option<AbortHandle>,
}

/// One running subscription and the sockets it delivers to.
pub struct Group {
    key: Option<GroupKey>,
    state: Mutex<GroupState>,
}

/// Where the running groups are found, by key; one per instance.
#[derive(Default)]
pub struct Hub {
    groups: Mutex<HashMap<GroupKey, Arc<Group>>>,
}

/// How a group's stream is started: given its start mark (the event id it follows from), the
/// responses of the subscription and the place where the transport learns which event each
/// response is about.
pub struct Start {
    pub responses: BoxStream<'static, async_graphql::Response>,
    pub progress: Arc<AtomicI64>,
}

/// A socket's share of a group; leaving is dropping it.
pub struct Membership {
    hub: Arc<Hub>,
    group: Arc<Group>,
    inbox: Arc<Inbox>,
    operation: u64,
}

impl Hub {
    /// How many groups run now.
    #[cfg(test)]
    fn running(&self) -> usize {
        lock(&self.groups).len()
    }

    /// Adds operation `operation` of the socket behind `inbox` to the group for `key`, starting
    /// the group when none runs (or always, without a key). `mark` reads the bus's high-water
    /// mark; `start` starts the subscription from a mark.
    pub fn join(
        self: &Arc<Self>,
        key: Option<GroupKey>,
        inbox: &Arc<Inbox>,
        operation: u64,
        mark: impl Fn() -> i64,
        start: impl FnOnce(i64) -> Start,
    ) -> Membership {
        let mut groups = lock(&self.groups);
        if let Some(group) = key.as_ref().and_then(|key| groups.get(key)) {
            let mut state = lock(&group.state);
            if !state.finished {
                state.members.push(Member {
                    inbox: inbox.clone(),
                    operation,
                    after: mark(),
                });
                drop(state);
                return Membership {
                    hub: self.clone(),
                    group: group.clone(),
                    inbox: inbox.clone(),
                    operation,
                };
            }
        }
        let after = mark();
        let group = Arc::new(Group {
            key: key.clone(),
            state: Mutex::new(GroupState {
                // The member that starts a group takes everything its stream yields: a shared
                // stream starts at this very mark, and one that replays from a cursor yields
                // events from before it.
                members: vec![Member {
                    inbox: inbox.clone(),
                    operation,
                    after: i64::MIN,
                }],
                finished: false,
                stop: None,
            }),
        });
        if let Some(key) = key {
            groups.insert(key, group.clone());
        }
        drop(groups);

        let Start {
            responses,
            progress,
        } = start(after);
        let (stop, registration) = AbortHandle::new_pair();
        lock(&group.state).stop = Some(stop);
        let driven = Abortable::new(
            drive(self.clone(), group.clone(), responses, progress),
            registration,
        );
        tokio::spawn(driven);
        Membership {
            hub: self.clone(),
            group,
            inbox: inbox.clone(),
            operation,
        }
    }

    /// Forgets `group` if it is the one registered under its key.
    fn forget(&self, groups: &mut HashMap<GroupKey, Arc<Group>>, group: &Arc<Group>) {
        if let Some(key) = &group.key
            && groups.get(key).is_some_and(|g| Arc::ptr_eq(g, group))
        {
            groups.remove(key);
        }
    }
}

/// Runs a group's stream and hands each response to its members.
async fn drive(
    hub: Arc<Hub>,
    group: Arc<Group>,
    mut responses: BoxStream<'static, async_graphql::Response>,
    progress: Arc<AtomicI64>,
) {
    let mut first = true;
    while let Some(response) = responses.next().await {
        // The event behind this response; a response about no event (an error before the
        // stream began) goes to everyone.
        let event_id = progress.swap(i64::MAX, Ordering::AcqRel);
        let failed = first && is_request_error(&response);
        first = false;
        let encoded = if failed {
            serde_json::to_string(&response.errors).map(|text| Outgoing::Error(text.into()))
        } else {
            serde_json::to_string(&response).map(|text| Outgoing::Next(text.into()))
        };
        let message = match encoded {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(error = %error, "subscription: cannot encode a response");
                if failed {
                    break;
                }
                continue;
            }
        };
        if failed {
            // The request failed before it ran (an `error` message ends the operation, with no
            // `complete`). The group is closed to newcomers in the same step, so that no socket
            // joins it after the error went out and then waits for an answer that never comes.
            let state = finish(&hub, &group);
            for member in &state.members {
                member.inbox.push(Delivery {
                    operation: member.operation,
                    message: message.clone(),
                });
            }
            return;
        }
        let state = lock(&group.state);
        for member in state.members.iter().filter(|m| m.after < event_id) {
            member.inbox.push(Delivery {
                operation: member.operation,
                message: message.clone(),
            });
        }
        drop(state);
    }
    let state = finish(&hub, &group);
    for member in &state.members {
        member.inbox.push(Delivery {
            operation: member.operation,
            message: Outgoing::Complete,
        });
    }
}

/// Takes `group` out of the hub and marks it finished, so that nobody joins it any more;
/// returns its state, still locked, for the last deliveries.
fn finish<'a>(hub: &Hub, group: &'a Arc<Group>) -> MutexGuard<'a, GroupState> {
    let mut groups = lock(&hub.groups);
    hub.forget(&mut groups, group);
    let mut state = lock(&group.state);
    state.finished = true;
    state
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut groups = lock(&self.hub.groups);
        let mut state = lock(&self.group.state);
        state
            .members
            .retain(|m| !(m.operation == self.operation && Arc::ptr_eq(&m.inbox, &self.inbox)));
        if state.members.is_empty() {
            if let Some(stop) = state.stop.take() {
                stop.abort();
            }
            state.finished = true;
            drop(state);
            self.hub.forget(&mut groups, &self.group);
        }
    }
}

/// An error before execution (parse, validation, limits): no data and no path.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// A lock whose holder panicked still holds consistent data here (every critical section is a
/// few pushes and removals).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credential;
    use std::time::Duration;

    fn principal() -> Principal {
        Principal {
            user_id: uuid::Uuid::nil(),
            role: Role::Reviewer,
            credential: Credential::ApiToken {
                token_id: uuid::Uuid::nil(),
            },
        }
    }

    fn key_of(query: &str) -> Option<GroupKey> {
        let document = async_graphql::parser::parse_query(query).expect("a document");
        GroupKey::of(&principal(), query, Some(&document), None, None)
    }

    #[test]
    fn only_plain_subscriptions_are_shared() {
        assert!(key_of("subscription { reviewQueueChanged { cursor } }").is_some());
        assert!(
            key_of("mutation { createApiToken(input: {name: \"x\"}) { token } }").is_none(),
            "a mutation runs once per request"
        );
        assert!(key_of("{ viewer { id } }").is_none(), "so does a query");
        assert!(
            key_of("subscription S { reviewQueueChanged { cursor } } query Q { viewer { id } }")
                .is_none(),
            "a document with a query beside the subscription"
        );
        assert!(key_of("subscription { reviewQueueChanged(after: \"x\") { cursor } }").is_none());
        assert!(
            key_of("subscription($a: String) { reviewQueueChanged(after: $a) { cursor } }")
                .is_none()
        );
        assert!(
            key_of(
                "subscription { ...F } fragment F on SubscriptionRoot { reviewQueueChanged(after: null) { cursor } }"
            )
            .is_none(),
            "through a fragment"
        );
        assert!(
            key_of("subscription { ... on SubscriptionRoot { reviewQueueChanged(after: \"x\") { cursor } } }")
                .is_none(),
            "through an inline fragment"
        );
        assert!(
            key_of(
                "subscription { a: reviewQueueChanged { cursor } b: reviewQueueChanged { cursor } }"
            )
            .is_none(),
            "two root fields"
        );
        assert!(
            key_of("subscription { ...F } fragment F on SubscriptionRoot { reviewQueueChanged { cursor } }")
                .is_none(),
            "a root field behind a fragment"
        );
    }

    /// A group whose stream the test feeds: each item is (event id, payload text).
    fn fed_group(
        hub: &Arc<Hub>,
        key: Option<GroupKey>,
        inbox: &Arc<Inbox>,
        operation: u64,
        mark: i64,
        feed: &mut Option<tokio::sync::mpsc::UnboundedSender<(i64, &'static str)>>,
    ) -> Membership {
        hub.join(
            key,
            inbox,
            operation,
            || mark,
            |_| {
                let (sender, receiver) =
                    tokio::sync::mpsc::unbounded_channel::<(i64, &'static str)>();
                *feed = Some(sender);
                let progress = Arc::new(AtomicI64::new(i64::MAX));
                let seen = progress.clone();
                let responses = tokio_stream_of(receiver)
                    .map(move |(id, text)| {
                        seen.store(id, Ordering::Release);
                        if text == "request error" {
                            let error = async_graphql::ServerError::new(text, None);
                            return async_graphql::Response::from_errors(vec![error]);
                        }
                        async_graphql::Response::new(async_graphql::Value::String(text.into()))
                    })
                    .boxed();
                Start {
                    responses,
                    progress,
                }
            },
        )
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> BoxStream<'static, T> {
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn texts(inbox: &Inbox) -> Vec<(u64, String)> {
        inbox
            .take()
            .into_iter()
            .map(|d| {
                let text = match d.message {
                    Outgoing::Next(text) => text.to_string(),
                    Outgoing::Error(text) => format!("error {text}"),
                    Outgoing::Complete => "complete".to_owned(),
                };
                (d.operation, text)
            })
            .collect()
    }

    #[tokio::test]
    async fn members_share_one_stream_from_their_own_marks() {
        let hub = Arc::new(Hub::default());
        let key = key_of("subscription { reviewQueueChanged { cursor } }");
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        let mut feed = None;
        let first = fed_group(&hub, key.clone(), &a, 1, 10, &mut feed);
        let feed = feed.expect("the group started");
        feed.send((11, "e11")).expect("fed");
        settle().await;
        // A second member joins at mark 12: it must not get 11 or 12, and must get 13.
        let mut unused = None;
        let second = fed_group(&hub, key.clone(), &b, 7, 12, &mut unused);
        assert!(
            unused.is_none(),
            "the second member joined the running group"
        );
        assert_eq!(hub.running(), 1);
        feed.send((12, "e12")).expect("fed");
        feed.send((13, "e13")).expect("fed");
        settle().await;
        let a_got: Vec<_> = texts(&a).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            a_got,
            ["\"e11\"", "\"e12\"", "\"e13\""].map(|t| format!("{{\"data\":{t}}}"))
        );
        assert_eq!(texts(&b), vec![(7, "{\"data\":\"e13\"}".to_owned())]);

        // The group ends when its last member leaves, and a new one starts afresh.
        drop(first);
        assert_eq!(hub.running(), 1);
        drop(second);
        assert_eq!(hub.running(), 0);
        settle().await;
        assert!(feed.is_closed(), "the stream was dropped");
    }

    #[tokio::test]
    async fn different_keys_and_replays_run_apart_and_an_ended_stream_completes() {
        let hub = Arc::new(Hub::default());
        let inbox = Arc::new(Inbox::default());
        let mut one = None;
        let mut two = None;
        let _a = fed_group(
            &hub,
            key_of("subscription { reviewQueueChanged { cursor } }"),
            &inbox,
            1,
            0,
            &mut one,
        );
        let _b = fed_group(&hub, None, &inbox, 2, 10, &mut two);
        assert!(
            one.is_some() && two.is_some(),
            "each started its own stream"
        );
        assert_eq!(hub.running(), 1, "only the shareable one is registered");
        // A replay yields events from before the bus's mark at subscribe: all are delivered.
        two.as_ref()
            .expect("fed")
            .send((4, "replayed"))
            .expect("fed");
        settle().await;
        assert_eq!(
            texts(&inbox),
            vec![(2, "{\"data\":\"replayed\"}".to_owned())]
        );
        drop(one);
        settle().await;
        assert_eq!(texts(&inbox), vec![(1, "complete".to_owned())]);
        assert_eq!(hub.running(), 0);
    }

    #[tokio::test]
    async fn a_request_error_goes_to_every_member_and_closes_the_group() {
        let hub = Arc::new(Hub::default());
        let key = key_of("subscription { reviewQueueChanged { cursor } }");
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        let mut feed = None;
        let _first = fed_group(&hub, key.clone(), &a, 1, 5, &mut feed);
        let mut unused = None;
        let _second = fed_group(&hub, key.clone(), &b, 2, 9, &mut unused);
        feed.as_ref()
            .expect("started")
            .send((i64::MAX, "request error"))
            .expect("fed");
        settle().await;
        for (inbox, operation) in [(&a, 1), (&b, 2)] {
            let got = texts(inbox);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, operation);
            assert!(got[0].1.starts_with("error ["), "{got:?}");
        }
        assert_eq!(hub.running(), 0, "nobody can join a group that failed");
        let mut again = None;
        let _third = fed_group(&hub, key, &a, 3, 9, &mut again);
        assert!(again.is_some(), "a later socket starts afresh");
    }

    #[tokio::test]
    async fn a_socket_that_does_not_read_overflows_instead_of_growing() {
        let inbox = Inbox::default();
        for operation in 0..(INBOX_LIMIT as u64 + 10) {
            inbox.push(Delivery {
                operation,
                message: Outgoing::Complete,
            });
        }
        assert!(inbox.overflowed());
        assert_eq!(inbox.take().len(), INBOX_LIMIT);
    }
}
