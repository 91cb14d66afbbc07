//! Client-side rate limits: the enforcer paces its own calls to stay inside the documented
//! per-account control-plane limits instead of provoking throttling.

use crate::aws::error::AwsError;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Every AWS operation the enforcer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// kinesis:DescribeStreamSummary.
    DescribeStreamSummary,
    /// kinesis:ListStreams.
    ListStreams,
    /// kinesis:ListTagsForStream.
    ListTagsForStream,
    /// kinesis:StartStreamEncryption.
    StartStreamEncryption,
    /// firehose:DescribeDeliveryStream.
    DescribeDeliveryStream,
    /// firehose:ListDeliveryStreams.
    ListDeliveryStreams,
    /// firehose:ListTagsForDeliveryStream.
    ListTagsForDeliveryStream,
    /// firehose:StartDeliveryStreamEncryption.
    StartDeliveryStreamEncryption,
    /// kms:DescribeKey.
    DescribeKey,
    /// dynamodb:Query on the re-application ledger.
    LedgerQuery,
    /// dynamodb:PutItem on the re-application ledger.
    LedgerPut,
}

/// Calls that share one per-account limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    KinesisDescribe,
    KinesisList,
    KinesisTags,
    KinesisWrite,
    Firehose,
    Kms,
    Ledger,
}

const BUCKETS: usize = 7;

impl Bucket {
    /// Calls per second: the documented per-account limits (Kinesis DescribeStreamSummary 20/s,
    /// ListStreams 5/s, ListTagsForStream 5/s; every Firehose control-plane call together 5/s).
    /// StartStreamEncryption has no published rate; 5/s keeps it with the other mutations. KMS
    /// DescribeKey shares a quota of thousands per second with the whole account: 50/s leaves it
    /// to everyone else.
    fn per_second(self) -> f64 {
        match self {
            Self::KinesisDescribe => 20.0,
            Self::KinesisList | Self::KinesisTags | Self::KinesisWrite | Self::Firehose => 5.0,
            // The ledger's on-demand table takes thousands per second; pace it like KMS.
            Self::Kms | Self::Ledger => 50.0,
        }
    }
}

impl Operation {
    /// The operation's name in the API reference.
    pub fn name(self) -> &'static str {
        match self {
            Self::DescribeStreamSummary => "DescribeStreamSummary",
            Self::ListStreams => "ListStreams",
            Self::ListTagsForStream => "ListTagsForStream",
            Self::StartStreamEncryption => "StartStreamEncryption",
            Self::DescribeDeliveryStream => "DescribeDeliveryStream",
            Self::ListDeliveryStreams => "ListDeliveryStreams",
            Self::ListTagsForDeliveryStream => "ListTagsForDeliveryStream",
            Self::StartDeliveryStreamEncryption => "StartDeliveryStreamEncryption",
            Self::DescribeKey => "kms:DescribeKey",
            Self::LedgerQuery => "dynamodb:Query",
            Self::LedgerPut => "dynamodb:PutItem",
        }
    }

    fn bucket(self) -> Bucket {
        match self {
            Self::DescribeStreamSummary => Bucket::KinesisDescribe,
            Self::ListStreams => Bucket::KinesisList,
            Self::ListTagsForStream => Bucket::KinesisTags,
            Self::StartStreamEncryption => Bucket::KinesisWrite,
            Self::DescribeDeliveryStream
            | Self::ListDeliveryStreams
            | Self::ListTagsForDeliveryStream
            | Self::StartDeliveryStreamEncryption => Bucket::Firehose,
            Self::DescribeKey => Bucket::Kms,
            Self::LedgerQuery | Self::LedgerPut => Bucket::Ledger,
        }
    }
}

/// Paces calls per bucket: each call gets the next free slot, a fixed interval after the
/// previous one. Shared by everything one account's calls go through.
///
/// The interval is `1 / (floor(rate) - 1)` seconds, so that no one-second window, closed at both
/// ends and starting anywhere, holds more than `floor(rate)` calls: then `containers` limiters at
/// `share / containers` each ([`crate::config::Config::container_share`]) never exceed `share`
/// together. At `1 / rate`, each container's free first call could add one more per second.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    next_slot: [Mutex<Option<Instant>>; BUCKETS],
    scale: f64,
}

/// The share of each documented limit the enforcer uses: a call that leaves late (signing,
/// scheduling) can share a second with the next at AWS, so the limit itself is too much.
pub(crate) const DEFAULT_SHARE: f64 = 0.9;

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_SHARE)
    }
}

impl RateLimiter {
    /// The share of the documented limits this limiter paces at.
    pub(crate) fn share(&self) -> f64 {
        self.scale
    }

    /// A limiter at `scale` times the documented limits ([`DEFAULT_SHARE`] by default).
    pub(crate) fn new(scale: f64) -> Self {
        Self {
            next_slot: Default::default(),
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
        }
    }

    /// Waits for the operation's next slot. A slot after `deadline` is not taken (the calls
    /// queued behind keep theirs) and is refused at once as `Enforcer.DeadlineExceeded`, rather
    /// than waited for until the invocation has no time left to report.
    pub(crate) async fn acquire(
        &self,
        operation: Operation,
        deadline: Instant,
    ) -> Result<(), AwsError> {
        let bucket = operation.bucket();
        let interval = self.interval(bucket);
        let slot = {
            let mut next = crate::sync::lock(&self.next_slot[bucket as usize]);
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            if slot > deadline {
                return Err(AwsError::unsent(
                    crate::aws::error::DEADLINE_EXCEEDED,
                    format!(
                        "{}'s next turn under the rate limiter is in {:.1}s, after the \
                         invocation's deadline (this account's calls are paced at {:.3} per \
                         second: RATE_SHARE {} of the documented limit, shared by the \
                         containers); no call was made",
                        operation.name(),
                        (slot - now).as_secs_f64(),
                        bucket.per_second() * self.scale,
                        self.scale,
                    ),
                ));
            }
            *next = Some(slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// The time between two calls of `bucket`: at most `floor(rate)` calls in any one-second
    /// window (see the type's documentation); one a second is 1.1 s apart. Below one call a
    /// second, `1 / rate`.
    fn interval(&self, bucket: Bucket) -> Duration {
        let rate = bucket.per_second() * self.scale;
        let per_window = rate.floor();
        Duration::from_secs_f64(if per_window >= 2.0 {
            1.0 / (per_window - 1.0)
        } else if per_window >= 1.0 {
            // One a second: just over a second apart, so that no window holds two.
            1.1
        } else {
            1.0 / rate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_are_paced_per_bucket_and_buckets_are_independent() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        let far = start + Duration::from_secs(3600);
        for _ in 0..9 {
            limiter.acquire(Operation::ListStreams, far).await.unwrap();
        }
        // 5/s: slots 1/4 s apart, so that a window closed at both ends holds 5: the 9th is due
        // 2 s after the first.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        // The default share, 90% of the limit: 4.5, so at most 4 in a second, 1/3 s apart.
        let shared = RateLimiter::default();
        let start = Instant::now();
        for _ in 0..7 {
            shared.acquire(Operation::ListStreams, far).await.unwrap();
        }
        let six_intervals = Instant::now() - start;
        assert!(
            (six_intervals.as_secs_f64() - 2.0).abs() < 1e-6,
            "{six_intervals:?}"
        );
        // Firehose calls share one bucket; a Kinesis describe does not wait for it.
        let before = Instant::now();
        limiter
            .acquire(Operation::DescribeStreamSummary, far)
            .await
            .unwrap();
        assert_eq!(Instant::now(), before);
        limiter
            .acquire(Operation::DescribeDeliveryStream, far)
            .await
            .unwrap();
        limiter
            .acquire(Operation::StartDeliveryStreamEncryption, far)
            .await
            .unwrap();
        assert_eq!(Instant::now() - before, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_after_the_deadline_is_refused_at_once_and_not_taken() {
        // 5/s at a share of 0.01: one ListStreams call every 20 s.
        let limiter = RateLimiter::new(0.01);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        limiter
            .acquire(Operation::ListStreams, deadline)
            .await
            .unwrap();
        let refused = limiter
            .acquire(Operation::ListStreams, deadline)
            .await
            .unwrap_err();
        assert_eq!(Instant::now(), start, "refused without waiting");
        assert_eq!(refused.code(), "Enforcer.DeadlineExceeded");
        assert!(refused.is_unsent());
        assert!(
            refused
                .message()
                .contains("ListStreams's next turn under the rate limiter is in 20.0s"),
            "{}",
            refused.message()
        );
        // The refused turn was not taken: a caller with time gets the slot 20 s on, not 40 s.
        limiter
            .acquire(Operation::ListStreams, start + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(20));
    }

    /// The most calls in any one-second window, closed at both ends, of sorted `times`.
    fn busiest_second(times: &[Instant]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] <= Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn containers_at_their_share_never_exceed_the_limit_together_in_any_second() {
        // Each container's limiter is at share / containers (RESERVED_CONCURRENCY), as the
        // function builds it; all call as fast as they may, starting at staggered instants.
        for (operation, limit) in [
            (Operation::StartStreamEncryption, 5.0),
            (Operation::DescribeStreamSummary, 20.0),
        ] {
            for containers in [1_u32, 2, 3, 4] {
                let share = DEFAULT_SHARE / f64::from(containers);
                let limiters: Vec<RateLimiter> =
                    (0..containers).map(|_| RateLimiter::new(share)).collect();
                let start = Instant::now();
                let far = start + Duration::from_secs(3600);
                let times = std::sync::Mutex::new(Vec::new());
                let runs = limiters.iter().enumerate().map(|(i, limiter)| {
                    let times = &times;
                    async move {
                        tokio::time::sleep(Duration::from_millis(130 * i as u64)).await;
                        for _ in 0..40 {
                            limiter.acquire(operation, far).await.unwrap();
                            times.lock().unwrap().push((i, Instant::now()));
                        }
                    }
                });
                futures_util::future::join_all(runs).await;
                let tagged = times.into_inner().unwrap();
                let mut times: Vec<Instant> = tagged.iter().map(|(_, t)| *t).collect();
                times.sort();
                let allowed = (limit * DEFAULT_SHARE).floor() as usize;
                let busiest = busiest_second(&times);
                assert!(
                    busiest <= allowed,
                    "{containers} containers: {busiest} {} calls in one second, allowed {allowed}",
                    operation.name()
                );
                // And no slower than that: each container makes its whole share in a second.
                let own = ((limit * share).floor() as usize).max(1);
                for i in 0..containers as usize {
                    let mine: Vec<Instant> = tagged
                        .iter()
                        .filter(|(c, _)| *c == i)
                        .map(|(_, t)| *t)
                        .collect();
                    assert_eq!(busiest_second(&mine), own, "{containers} containers, #{i}");
                }
            }
        }
    }
}
