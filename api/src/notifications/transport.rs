//! How an outbox message leaves the service: into the log, a folder of `.eml` files, or an SMTP
//! server, as `MAIL_TRANSPORT` says.

use std::time::Duration;

use anyhow::Context;
use entity::notification;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox,
        header::{ContentType, Header, HeaderName, HeaderValue},
    },
};
use secrecy::ExposeSecret;

use crate::config::{MailSettings, MailTransportSettings};

/// How long one SMTP command may take before the attempt fails (lettre's default is 60 s).
const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message was not delivered. The text is stored in the outbox's `last_error`, so it never
/// holds the message or credentials (lettre's errors hold neither).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The outbox row cannot become an e-mail, e.g. its recipient is not an address.
    #[error("the message cannot be built: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing the .eml file failed: {0}")]
    File(#[from] lettre::transport::file::Error),
    #[error("delivery took longer than {} s", .0.as_secs())]
    TimedOut(Duration),
}

enum Transport {
    Log,
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Turns outbox rows into e-mails and hands them to the configured transport.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    /// The mailer `settings` describe. Creates the folder of the file transport; connects to
    /// nothing (the SMTP server is reached per message, so it may be down at start-up).
    pub fn from_settings(settings: &MailSettings) -> anyhow::Result<Self> {
        let transport = match &settings.transport {
            MailTransportSettings::Log => Transport::Log,
            MailTransportSettings::File { dir } => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("MAIL_FILE_DIR: creating the mail folder {}", dir.display())
                })?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            MailTransportSettings::Smtp { url } => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("SMTP_URL is not accepted by the mail library")?
                    .timeout(Some(SMTP_COMMAND_TIMEOUT))
                    .build();
                Transport::Smtp(transport)
            }
        };
        Ok(Self {
            from: settings.from.clone(),
            transport,
        })
    }

    /// `log`, `file` or `smtp`, for log lines.
    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Log => "log",
            Transport::File(_) => "file",
            Transport::Smtp(_) => "smtp",
        }
    }

    /// Delivers one outbox message. Does not touch the database.
    pub async fn deliver(&self, row: &notification::Model) -> Result<(), DeliveryError> {
        let message = self.build(row)?;
        match &self.transport {
            Transport::Log => {
                tracing::info!(
                    notification.id = %row.id,
                    notification.kind = %row.kind,
                    recipient.domain = recipient_domain(&row.recipient),
                    "e-mail written to the log instead of being sent (MAIL_TRANSPORT=log)"
                );
                tracing::debug!(
                    notification.id = %row.id,
                    message = %String::from_utf8_lossy(&message.formatted()),
                    "e-mail written to the log"
                );
            }
            Transport::File(transport) => {
                let file_id = transport.send(message).await?;
                tracing::debug!(notification.id = %row.id, file.id = %file_id, "e-mail written");
            }
            Transport::Smtp(transport) => {
                transport.send(message).await?;
            }
        }
        Ok(())
    }

    /// The e-mail for an outbox row. Its `Message-ID` derives from the row's id, so a message
    /// sent again after a crash is recognisably the same message.
    fn build(&self, row: &notification::Model) -> Result<Message, DeliveryError> {
        let to: Mailbox = row
            .recipient
            .parse()
            .map_err(|error| DeliveryError::Build(format!("invalid recipient address: {error}")))?;
        Message::builder()
            .message_id(Some(format!("<{}@{}>", row.id, self.from.email.domain())))
            .from(self.from.clone())
            .to(to)
            .subject(row.subject.clone())
            .header(AutoSubmitted)
            .header(ContentType::TEXT_PLAIN)
            .body(row.body.clone())
            .map_err(|error| DeliveryError::Build(error.to_string()))
    }
}

/// Only the domain of an address, for logs at info level.
fn recipient_domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells mail servers and clients this is machine
/// mail, so vacation auto-replies are not sent back to it.
#[derive(Clone, Copy, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn row(recipient: &str) -> notification::Model {
        notification::Model {
            id: Uuid::now_v7(),
            recipient: recipient.to_owned(),
            subject: "Contoso: submission #1 approved".to_owned(),
            body: "Hello,\n\n.A line that starts with a dot.\n".to_owned(),
            kind: "APPROVED".to_owned(),
            provider_id: None,
            submission_id: None,
            created_at: Utc::now(),
            attempts: 0,
            next_attempt_at: Utc::now(),
            locked_until: None,
            sent_at: None,
            last_error: None,
        }
    }

    fn settings(transport: MailTransportSettings) -> MailSettings {
        MailSettings {
            transport,
            from: "Dashboard <no-reply@dashboard.example>"
                .parse()
                .expect("a valid sender"),
            poll_interval: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn the_file_transport_writes_one_eml_per_message_with_our_headers() {
        let dir = std::env::temp_dir().join(format!("amdash-mail-{}", Uuid::new_v4().simple()));
        let mailer = Mailer::from_settings(&settings(MailTransportSettings::File {
            dir: dir.join("nested"),
        }))
        .expect("the folder is created");
        let row = row("owner@contoso.example");

        mailer.deliver(&row).await.expect("written");

        let files: Vec<_> = std::fs::read_dir(dir.join("nested"))
            .expect("the folder exists")
            .map(|entry| entry.expect("an entry").path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
        let eml = std::fs::read_to_string(&files[0]).expect("readable");
        assert!(eml.contains("To: owner@contoso.example\r\n"), "{eml}");
        assert!(
            eml.contains("Subject: Contoso: submission #1 approved\r\n"),
            "{eml}"
        );
        assert!(eml.contains("Auto-Submitted: auto-generated\r\n"), "{eml}");
        let message_id = format!("Message-ID: <{}@dashboard.example>\r\n", row.id);
        assert!(eml.contains(&message_id), "{eml}");
        assert!(eml.contains("Hello,\r\n\r\n.A line"), "{eml}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_recipient_that_is_not_an_address_is_a_build_error() {
        let mailer = Mailer::from_settings(&settings(MailTransportSettings::Log)).expect("log");
        let error = mailer
            .deliver(&row("not an address"))
            .await
            .expect_err("refused");
        assert!(matches!(error, DeliveryError::Build(_)), "{error}");
        mailer
            .deliver(&row("owner@contoso.example"))
            .await
            .expect("the log transport accepts a good message");
    }

    #[test]
    fn only_the_domain_of_a_recipient_is_logged() {
        assert_eq!(recipient_domain("owner@contoso.example"), "contoso.example");
        assert_eq!(recipient_domain("nobody"), "");
    }
}
