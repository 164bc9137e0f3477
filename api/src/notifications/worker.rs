//! The mail worker: a background task that delivers due outbox messages and retries failures.
//!
//! Every poll it reads a batch of due, unsent, unleased rows, then claims each with a conditional
//! `UPDATE` that sets a lease (`locked_until`); only the worker whose `UPDATE` changed the row
//! sends it, so instances sharing a database do not send a message twice. Each statement is a
//! single auto-committed write, and delivery happens between them, never inside a transaction:
//! on SQLite the write lock is held for milliseconds, however slow the mail server.
//!
//! A failed delivery is retried after `MAIL_RETRY_BASE_MS`, doubling up to `MAIL_RETRY_MAX_MS`.
//! The worker never gives up on a message: from [`LOUD_AFTER_ATTEMPTS`] failures on, each
//! failure is logged at error level so that somebody looks at the mail server or the address.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::notification::{self, Column};
use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::transport::{DeliveryError, Mailer};
use crate::{config::MailSettings, db::Db, metrics::Metrics};

/// Rows read per poll. A full batch is followed at once by the next one.
const BATCH_SIZE: u64 = 16;

/// How long a claimed message stays reserved for the worker delivering it.
const LEASE: Duration = Duration::from_secs(300);

/// Longest one delivery may take. Shorter than [`LEASE`], so a live worker always finishes (or
/// gives up) while it still holds the message.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
const _: () = assert!(DELIVERY_TIMEOUT.as_secs() < LEASE.as_secs());

/// From this many failed attempts on, failures are logged at error level instead of warn.
pub const LOUD_AFTER_ATTEMPTS: i32 = 10;

/// Longest stored `last_error`, in characters.
const MAX_ERROR_CHARS: usize = 1000;

/// How long [`MailWorker::stop`] waits for a delivery in progress before abandoning it (its
/// lease then expires and the message is retried).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The running mail worker. Stopping it (or dropping it) ends the task after the message in
/// hand, if any.
pub struct MailWorker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MailWorker {
    /// Starts delivering the outbox of `db` through `mailer` on the current Tokio runtime.
    pub fn spawn(db: Db, mailer: Mailer, settings: &MailSettings, metrics: Metrics) -> Self {
        let stop = CancellationToken::new();
        let worker = Worker {
            db,
            mailer,
            poll_interval: settings.poll_interval,
            retry_base: settings.retry_base,
            retry_max: settings.retry_max,
            metrics,
            stop: stop.clone(),
        };
        let task = tokio::spawn(worker.run());
        Self { stop, task }
    }

    /// Asks the worker to stop and waits until it has, or until a delivery in progress has had
    /// [`STOP_GRACE`] to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %error, "the mail worker failed"),
            Err(_) => {
                self.task.abort();
                tracing::warn!(
                    grace_ms = STOP_GRACE.as_millis(),
                    "the mail worker did not stop in time; the message it was sending will be \
                     retried after its lease expires"
                );
            }
        }
    }
}

impl Drop for MailWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Worker {
    db: Db,
    mailer: Mailer,
    poll_interval: Duration,
    retry_base: Duration,
    retry_max: Duration,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Worker {
    async fn run(self) {
        tracing::info!(
            transport = self.mailer.transport_name(),
            poll_interval_ms = self.poll_interval.as_millis(),
            "mail worker started"
        );
        while !self.stop.is_cancelled() {
            let claimed = match self.deliver_due().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = %error, "mail worker could not read the outbox");
                    0
                }
            };
            if claimed as u64 == BATCH_SIZE {
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        tracing::info!("mail worker stopped");
    }

    /// Claims and delivers the due messages of one batch; returns how many it claimed.
    async fn deliver_due(&self) -> Result<usize, DbErr> {
        let now = Utc::now();
        let due = notification::Entity::find()
            .filter(Column::SentAt.is_null())
            .filter(Column::NextAttemptAt.lte(now))
            .filter(lease_free(now))
            .order_by_asc(Column::NextAttemptAt)
            .order_by_asc(Column::Id)
            .limit(BATCH_SIZE)
            .all(self.db.conn())
            .await?;

        let mut claimed = 0;
        for row in due {
            if self.stop.is_cancelled() {
                break;
            }
            if self.claim(row.id).await? {
                claimed += 1;
                self.deliver(row).await;
            }
        }
        Ok(claimed)
    }

    /// Takes the lease on a message; `false` when another worker has it, or it was sent or
    /// rescheduled since it was read.
    async fn claim(&self, id: Uuid) -> Result<bool, DbErr> {
        let now = Utc::now();
        let lease_end = now + LEASE;
        let result = notification::Entity::update_many()
            .col_expr(Column::LockedUntil, Expr::value(Some(lease_end)))
            .filter(Column::Id.eq(id))
            .filter(Column::SentAt.is_null())
            .filter(Column::NextAttemptAt.lte(now))
            .filter(lease_free(now))
            .exec(self.db.conn())
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Sends a claimed message and records the outcome. Database errors here are logged, not
    /// returned: the lease expires and the message is tried again.
    async fn deliver(&self, row: notification::Model) {
        let attempt = row.attempts + 1;
        let outcome = match tokio::time::timeout(DELIVERY_TIMEOUT, self.mailer.deliver(&row)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(DeliveryError::TimedOut(DELIVERY_TIMEOUT)),
        };
        match outcome {
            Ok(()) => {
                self.metrics.observe_mail_delivery("sent");
                tracing::info!(
                    notification.id = %row.id,
                    notification.kind = %row.kind,
                    attempt,
                    "notification sent"
                );
                if let Err(error) = self.mark_sent(row.id).await {
                    tracing::error!(
                        notification.id = %row.id,
                        error = %error,
                        "notification sent but not marked as sent; it will be sent again when \
                         its lease expires"
                    );
                }
            }
            Err(failure) => {
                self.metrics.observe_mail_delivery("failed");
                let delay = retry_delay(attempt, self.retry_base, self.retry_max);
                if attempt >= LOUD_AFTER_ATTEMPTS {
                    tracing::error!(
                        notification.id = %row.id,
                        notification.kind = %row.kind,
                        attempt,
                        retry_in_ms = delay.as_millis(),
                        error = %failure,
                        "notification still not delivered; check the mail server and the address"
                    );
                } else {
                    tracing::warn!(
                        notification.id = %row.id,
                        notification.kind = %row.kind,
                        attempt,
                        retry_in_ms = delay.as_millis(),
                        error = %failure,
                        "notification not delivered; will retry"
                    );
                }
                if let Err(error) = self.mark_failed(row.id, &failure, delay).await {
                    tracing::error!(
                        notification.id = %row.id,
                        error = %error,
                        "could not record the failed delivery; retrying when the lease expires"
                    );
                }
            }
        }
    }

    async fn mark_sent(&self, id: Uuid) -> Result<(), DbErr> {
        notification::Entity::update_many()
            .col_expr(Column::SentAt, Expr::value(Some(Utc::now())))
            .col_expr(Column::LockedUntil, Expr::value(None::<DateTime<Utc>>))
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .filter(Column::Id.eq(id))
            .filter(Column::SentAt.is_null())
            .exec(self.db.conn())
            .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        failure: &DeliveryError,
        delay: Duration,
    ) -> Result<(), DbErr> {
        let error: String = failure.to_string().chars().take(MAX_ERROR_CHARS).collect();
        let next = Utc::now() + delay;
        notification::Entity::update_many()
            .col_expr(Column::LastError, Expr::value(Some(error)))
            .col_expr(Column::NextAttemptAt, Expr::value(next))
            .col_expr(Column::LockedUntil, Expr::value(None::<DateTime<Utc>>))
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .filter(Column::Id.eq(id))
            .filter(Column::SentAt.is_null())
            .exec(self.db.conn())
            .await?;
        Ok(())
    }
}

/// Rows no worker holds a lease on at `now`.
fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(Column::LockedUntil.is_null())
        .add(Column::LockedUntil.lt(now))
}

/// The wait after failed attempt number `attempt` (1 for the first): `base`, then doubling,
/// never more than `max`.
pub fn retry_delay(attempt: i32, base: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).clamp(0, 30) as u32;
    base.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_the_base_doubling_up_to_the_cap() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(900);
        let delays: Vec<u64> = (1..=10)
            .map(|attempt| retry_delay(attempt, base, max).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(retry_delay(i32::MAX, base, max), max);
        assert_eq!(retry_delay(0, base, max), base);
        assert_eq!(retry_delay(-3, base, max), base);
    }
}
