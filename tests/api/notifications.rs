//! Decision e-mails through the outbox: delivered once over real SMTP after the transaction
//! commits, never after a rollback, kept while the server is down, shared between instances.
//!
//! The SMTP server is a small one written here, on 127.0.0.1, that records what it receives.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use dashboard::{
    notifications::{self, Decision, Notification, decision_message},
    startup::Application,
};
use entity::notification;
use mail_parser::MessageParser;
use sea_orm::{EntityTrait, QueryOrder};
use secrecy::ExposeSecret;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with, test_settings};

/// How long a test waits for something that should happen within a few poll intervals.
const DEADLINE: Duration = Duration::from_secs(30);

/// How long a test keeps watching for a second delivery that must not come: many poll intervals
/// of the test workers (50 ms).
const QUIET_PERIOD: Duration = Duration::from_millis(750);

/// One message as the test SMTP server received it.
#[derive(Clone, Debug)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

impl Received {
    fn subject(&self) -> String {
        MessageParser::default()
            .parse(self.data.as_bytes())
            .and_then(|m| m.subject().map(str::to_owned))
            .expect("a message with a subject")
    }

    fn body_text(&self) -> String {
        MessageParser::default()
            .parse(self.data.as_bytes())
            .and_then(|m| m.body_text(0).map(|b| b.replace("\r\n", "\n")))
            .expect("a message with a text body")
    }
}

/// A minimal SMTP server: accepts every envelope and records every message.
struct SmtpServer {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    /// Listens on a port used before; retried briefly in case a client socket still holds it.
    async fn start_on(port: u16) -> Self {
        let mut tries = 0;
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => return Self::serve(listener),
                Err(error) if tries < 50 => {
                    tries += 1;
                    eprintln!("port {port} not free yet: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("could not listen on port {port} again: {error}"),
            }
        }
    }

    fn serve(listener: TcpListener) -> Self {
        let port = listener.local_addr().expect("local address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(smtp_session(stream, sink.clone()));
            }
        });
        Self {
            port,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One SMTP conversation, just enough of RFC 5321 for lettre.
async fn smtp_session(stream: TcpStream, sink: Arc<Mutex<Vec<Received>>>) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut reply = async |text: &str| writer.write_all(text.as_bytes()).await.is_ok();
    if !reply("220 test.localhost ESMTP ready\r\n").await {
        return;
    }
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answer = if command.starts_with("EHLO") || command.starts_with("HELO") {
            "250 test.localhost\r\n"
        } else if command.starts_with("MAIL FROM:") {
            mail_from = angle_address(&line);
            rcpt_to.clear();
            "250 OK\r\n"
        } else if command.starts_with("RCPT TO:") {
            rcpt_to.push(angle_address(&line));
            "250 OK\r\n"
        } else if command == "DATA" {
            if !reply("354 end with <CRLF>.<CRLF>\r\n").await {
                return;
            }
            let mut data = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" {
                    break;
                }
                // Dot-stuffing: a line starting with a dot was sent with one more.
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            sink.lock().expect("not poisoned").push(Received {
                mail_from: mail_from.clone(),
                rcpt_to: std::mem::take(&mut rcpt_to),
                data,
            });
            "250 OK queued\r\n"
        } else if command == "RSET" || command == "NOOP" {
            "250 OK\r\n"
        } else if command == "QUIT" {
            reply("221 bye\r\n").await;
            return;
        } else {
            "502 command not implemented\r\n"
        };
        if !reply(answer).await {
            return;
        }
    }
}

/// `a@b` from `MAIL FROM:<a@b> SIZE=…`.
fn angle_address(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// Settings that send mail to `smtp_url` and retry within a fraction of a second.
fn mail_overrides(smtp_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MAIL_TRANSPORT", "smtp".into()),
        ("SMTP_URL", smtp_url.to_owned()),
        (
            "MAIL_FROM",
            "Actionable dashboard <no-reply@dashboard.test>".into(),
        ),
        ("MAIL_POLL_INTERVAL_MS", "50".into()),
        ("MAIL_RETRY_BASE_MS", "100".into()),
        ("MAIL_RETRY_MAX_MS", "400".into()),
    ]
}

async fn spawn_mail_app(smtp_url: &str, extra: &[(&'static str, String)]) -> TestApp {
    let mut overrides = mail_overrides(smtp_url);
    overrides.extend_from_slice(extra);
    let pairs: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&pairs).await
}

/// A changes-requested notification whose subject carries `tag`.
fn notification(tag: &str) -> Notification {
    let (subject, body) = decision_message(
        Decision::ChangesRequested,
        &format!("Contoso {tag}"),
        2,
        "GLOBAL",
        Some("The support URL answers 404."),
        &["publisherInfo.supportUrl".to_owned()],
    );
    Notification {
        recipient: "owner@contoso.test".into(),
        subject,
        body,
        kind: Decision::ChangesRequested.kind(),
        provider_id: Some(Uuid::new_v4()),
        submission_id: Some(Uuid::new_v4()),
    }
}

/// Enqueues in a write transaction and commits, as the decision services do.
async fn enqueue_committed(app: &TestApp, notifications: Vec<Notification>) {
    let txn = app.state.db.begin_write().await.expect("begin");
    for notification in notifications {
        notifications::enqueue(&txn, notification)
            .await
            .expect("enqueue");
    }
    txn.commit().await.expect("commit");
}

async fn outbox(app: &TestApp) -> Vec<notification::Model> {
    notification::Entity::find()
        .order_by_asc(notification::Column::CreatedAt)
        .all(app.state.db.conn())
        .await
        .expect("read the outbox")
}

/// Polls `check` until it returns something, or fails the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() > DEADLINE {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn all_sent(app: &TestApp, count: usize) -> Vec<notification::Model> {
    eventually(
        &format!("{count} notifications are marked sent"),
        || async {
            let rows = outbox(app).await;
            (rows.len() == count && rows.iter().all(|r| r.sent_at.is_some())).then_some(rows)
        },
    )
    .await
}

#[tokio::test]
async fn a_committed_notification_is_delivered_once_with_its_recipient_subject_and_body() {
    let smtp = SmtpServer::start().await;
    let app = spawn_mail_app(&smtp.url(), &[]).await;
    let sent = notification("committed");

    enqueue_committed(&app, vec![sent.clone()]).await;

    let rows = all_sent(&app, 1).await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let message = &received[0];
    assert_eq!(message.mail_from, "no-reply@dashboard.test");
    assert_eq!(message.rcpt_to, ["owner@contoso.test"]);
    assert_eq!(message.subject(), sent.subject);
    assert_eq!(message.body_text().trim_end(), sent.body.trim_end());
    assert!(
        message
            .data
            .contains(&format!("Message-ID: <{}@dashboard.test>", rows[0].id)),
        "{}",
        message.data
    );
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(rows[0].kind, "CHANGES_REQUESTED");
    assert_eq!(rows[0].locked_until, None);
    assert_eq!(rows[0].last_error, None);
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains("amdash_mail_deliveries_total{outcome=\"sent\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_rolled_back_notification_is_never_sent() {
    let smtp = SmtpServer::start().await;
    let app = spawn_mail_app(&smtp.url(), &[]).await;

    let txn = app.state.db.begin_write().await.expect("begin");
    notifications::enqueue(&txn, notification("rolled back"))
        .await
        .expect("enqueue");
    txn.rollback().await.expect("roll back");
    // A later committed message: once it has gone out, the worker has been through the outbox.
    enqueue_committed(&app, vec![notification("committed later")]).await;

    all_sent(&app, 1).await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let subjects: Vec<String> = smtp.received().iter().map(Received::subject).collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(subjects[0].contains("committed later"), "{subjects:?}");
}

#[tokio::test]
async fn mail_waits_in_the_outbox_while_the_smtp_server_is_down_and_goes_out_once_it_is_back() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local address").port()
    };
    let app = spawn_mail_app(&format!("smtp://127.0.0.1:{closed_port}"), &[]).await;
    let sent = notification("delayed");

    // The decision's transaction commits although no mail server answers.
    enqueue_committed(&app, vec![sent.clone()]).await;

    let failed = eventually("two delivery attempts have failed", || async {
        let rows = outbox(&app).await;
        rows.into_iter()
            .find(|r| r.attempts >= 2 && r.last_error.is_some())
    })
    .await;
    assert_eq!(failed.sent_at, None);
    let error = failed.last_error.expect("an error");
    assert!(error.contains("SMTP"), "{error}");
    assert!(!error.contains("owner@contoso.test"), "{error}");

    let smtp = SmtpServer::start_on(closed_port).await;
    let rows = all_sent(&app, 1).await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].subject(), sent.subject);
    assert!(rows[0].attempts >= 3, "{:?}", rows[0]);
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains("amdash_mail_deliveries_total{outcome=\"failed\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_message_once() {
    let smtp = SmtpServer::start().await;
    let fast = ("MAIL_POLL_INTERVAL_MS", "10".to_owned());
    let first = spawn_mail_app(&smtp.url(), std::slice::from_ref(&fast)).await;
    let database_url = first.state.settings.database_url.expose_secret().to_owned();
    let second = spawn_mail_app(&smtp.url(), &[fast, ("DATABASE_URL", database_url)]).await;
    let tags: Vec<String> = (0..20).map(|n| format!("message {n:02}")).collect();

    enqueue_committed(&second, tags.iter().map(|t| notification(t)).collect()).await;

    all_sent(&first, tags.len()).await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let mut subjects: Vec<String> = smtp.received().iter().map(Received::subject).collect();
    subjects.sort();
    let mut expected: Vec<String> = tags.iter().map(|t| notification(t).subject).collect();
    expected.sort();
    assert_eq!(subjects, expected);
}

#[tokio::test]
async fn the_mail_worker_stops_when_the_server_stops() {
    let smtp = SmtpServer::start().await;
    let overrides = mail_overrides(&smtp.url());
    let pairs: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let application = Application::build(test_settings(&pairs).await)
        .await
        .expect("build the application");
    let server = application.server_handle();
    let state = application.state().clone();
    let running = tokio::spawn(application.run_until_stopped());

    server.stop(true).await;
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the application stops")
        .expect("the task did not panic")
        .expect("the server stopped cleanly");

    let txn = state.db.begin_write().await.expect("begin");
    notifications::enqueue(&txn, notification("after the stop"))
        .await
        .expect("enqueue");
    txn.commit().await.expect("commit");
    tokio::time::sleep(QUIET_PERIOD).await;
    assert!(smtp.received().is_empty(), "{:#?}", smtp.received());
    let rows = notification::Entity::find()
        .all(state.db.conn())
        .await
        .expect("read the outbox");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 0, "no worker touched it");
}

#[tokio::test]
async fn each_decision_emails_the_contact_address_of_the_submission() {
    let server = SmtpServer::start().await;
    let app = spawn_mail_app(&server.url(), &[]).await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let mut provider =
        crate::registration::Registration::create(&app, &owner, "Seed example").await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope("ORGANIZATION").await;
    provider.contact().await;
    let submitted = provider.submit().await;
    let id = submitted["submission"]["id"]
        .as_str()
        .expect("submitted")
        .to_owned();
    let decide = |query: &'static str, id: String| {
        let app = &app;
        let token = reviewer.access_token.clone();
        async move {
            app.graphql(Some(&token), query, serde_json::json!({ "id": id }))
                .await
        }
    };
    decide(
        "mutation($id: ID!) { claimSubmission(input: {submissionId: $id}) { submission { id } } }",
        id.clone(),
    )
    .await;
    decide(
        "mutation($id: ID!) { requestChanges(input: {submissionId: $id, reason: \"Use your production sender.\", fields: [\"providerDetails.senderEmails\"]}) { submission { status } } }",
        id,
    )
    .await;
    provider
        .provider_details(
            &["notifications@myservice.com"],
            &["https://api.myservice.com"],
        )
        .await;
    let resubmitted = provider.submit().await;
    let second = resubmitted["submission"]["id"]
        .as_str()
        .expect("resubmitted")
        .to_owned();
    let approved = decide("mutation($id: ID!) { approveSubmission(input: {submissionId: $id}) { submission { status } } }", second).await;
    assert_eq!(
        approved["data"]["approveSubmission"]["submission"]["status"],
        serde_json::json!("APPROVED"),
        "{approved}"
    );

    let received = eventually("both decision e-mails arrive", || async {
        let received = server.received();
        (received.len() >= 2).then_some(received)
    })
    .await;
    assert_eq!(received.len(), 2);
    for message in &received {
        assert_eq!(message.rcpt_to, vec!["dana@contoso.com".to_owned()]);
    }
    assert!(
        received[0]
            .body_text()
            .contains("Use your production sender."),
        "{}",
        received[0].body_text()
    );
    assert!(
        received[0]
            .body_text()
            .contains("providerDetails.senderEmails")
    );
    assert!(
        received[1].subject().to_lowercase().contains("approved"),
        "{}",
        received[1].subject()
    );
}
