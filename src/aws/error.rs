//! One error type for every AWS call, named the way the retry policy names errors.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use std::fmt;

/// Error names for failures that carry no AWS error code. They can be used in a retry policy's
/// `ErrorEquals` like any AWS code.
pub mod transport {
    /// The connection could not be made, or broke before a response arrived.
    pub const CONNECTION_ERROR: &str = "Enforcer.ConnectionError";
    /// Connecting or waiting for the response took longer than the client allows.
    pub const TIMEOUT: &str = "Enforcer.Timeout";
    /// A response arrived but could not be read or parsed.
    pub const RESPONSE_ERROR: &str = "Enforcer.ResponseError";
    /// An HTTP 5xx answer without an AWS error code.
    pub const SERVER_ERROR: &str = "Enforcer.ServerError";
    /// An HTTP 4xx answer without an AWS error code.
    pub const UNKNOWN_ERROR: &str = "Enforcer.UnknownError";
    /// The request could not be built (a bad value reached the SDK); never transient.
    pub const REQUEST_ERROR: &str = "Enforcer.RequestError";
}

/// The invocation's time ran out: an attempt still unanswered at the deadline was cut off, or a
/// call's turn under the rate limiter would come after it. No retry within the invocation can
/// help, so even `States.ALL` does not retry it; Lambda's retry of the event carries on.
pub const DEADLINE_EXCEEDED: &str = "Enforcer.DeadlineExceeded";

/// Error names for the per-resource quotas that AWS answers with `LimitExceededException`, the
/// same code as its rate throttling. A quota is used up for hours, so retrying it as throttling
/// only burns the invocation: these names are never retried, whatever the policy says.
pub mod quota {
    /// Kinesis: a new key was applied to the stream 25 times in the rolling 24 hours
    /// (StartStreamEncryption's API limit).
    pub const KINESIS_KEY_CHANGES: &str = "Enforcer.KeyChangeQuotaExceeded";
    /// Firehose: StartDeliveryStreamEncryption and StopDeliveryStreamEncryption were called 25
    /// times together for the delivery stream in 24 hours.
    pub const FIREHOSE_ENCRYPTION_CALLS: &str = "Enforcer.EncryptionCallQuotaExceeded";
    /// Firehose: the customer managed key already encrypts 500 delivery streams.
    pub const FIREHOSE_STREAMS_PER_KEY: &str = "Enforcer.StreamsPerKeyExceeded";
    /// Every quota name.
    pub const ALL: [&str; 3] = [
        KINESIS_KEY_CHANGES,
        FIREHOSE_ENCRYPTION_CALLS,
        FIREHOSE_STREAMS_PER_KEY,
    ];

    /// Whether a `LimitExceededException` message is rate throttling. AWS's throttling messages
    /// say "Rate exceeded" ("Rate exceeded for stream orders under account 123456789012.",
    /// "Rate exceeded for account ..."), and Terraform's provider tells them apart by the same
    /// words; AWS documents no message for the quotas, so any other message is taken as one.
    pub fn is_rate(message: &str) -> bool {
        let message = message.to_ascii_lowercase();
        ["rate exceeded", "throttl", "too many requests", "slow down"]
            .iter()
            .any(|words| message.contains(words))
    }

    /// Whether a write's error is one of the quotas: `LimitExceededException` that is not rate
    /// throttling.
    pub fn is_quota(error: &super::AwsError) -> bool {
        error.code() == "LimitExceededException" && !is_rate(error.message())
    }
}

/// A failed AWS call: the AWS error code (or a [`transport`] name), the message and the SDK
/// error it came from.
#[derive(Debug)]
pub struct AwsError {
    code: String,
    message: String,
    /// The HTTP status of AWS's answer, when there was one.
    status: Option<u16>,
    /// Raised before any request left (the rate limiter's refusal): not a call.
    unsent: bool,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl AwsError {
    /// An error with a code and message and no underlying SDK error (used by fakes and for
    /// conditions the enforcer detects itself).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: None,
            unsent: false,
            source: None,
        }
    }

    /// The error as if AWS had answered it with HTTP `status`.
    #[cfg(test)]
    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// An error raised before the request was sent, so that no call is counted for it.
    pub fn unsent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            unsent: true,
            ..Self::new(code, message)
        }
    }

    /// Whether the error was raised before any request left.
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }

    /// Whether AWS answered with HTTP 5xx: a fault on AWS's side, whatever the code says.
    pub fn is_server_side(&self) -> bool {
        self.status.is_some_and(|s| s >= 500)
    }

    /// The AWS error code (`ResourceInUseException`, ...) or a [`transport`] name.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The same error under another name (the SDK error it came from is kept).
    pub fn renamed(mut self, code: &str) -> Self {
        code.clone_into(&mut self.code);
        self
    }

    /// The message AWS (or the transport) gave.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Classifies an SDK error of any AWS service.
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
        SdkError<E, R>: HttpStatus,
    {
        let status = err.http_status();
        let (code, message) = match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                match inner.code() {
                    Some(code) => (
                        code.to_owned(),
                        inner.message().unwrap_or_default().to_owned(),
                    ),
                    None => {
                        let code = match status {
                            Some(s) if s >= 500 => transport::SERVER_ERROR,
                            _ => transport::UNKNOWN_ERROR,
                        };
                        let status =
                            status.map_or_else(|| "no status".to_owned(), |s| format!("HTTP {s}"));
                        (
                            code.to_owned(),
                            format!("{status} without an AWS error code"),
                        )
                    }
                }
            }
            SdkError::TimeoutError(_) => (
                transport::TIMEOUT.to_owned(),
                "the call timed out".to_owned(),
            ),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => (
                transport::TIMEOUT.to_owned(),
                "timed out while connecting or sending".to_owned(),
            ),
            SdkError::DispatchFailure(_) => (
                transport::CONNECTION_ERROR.to_owned(),
                "the request could not be sent".to_owned(),
            ),
            // A 5xx whose body is not an AWS error (a proxy's or load balancer's page).
            SdkError::ResponseError(_) if status.is_some_and(|s| s >= 500) => (
                transport::SERVER_ERROR.to_owned(),
                format!(
                    "HTTP {} with an unreadable body",
                    status.unwrap_or_default()
                ),
            ),
            SdkError::ResponseError(_) => (
                transport::RESPONSE_ERROR.to_owned(),
                "the response could not be read".to_owned(),
            ),
            SdkError::ConstructionFailure(_) => (
                transport::REQUEST_ERROR.to_owned(),
                "the request could not be built".to_owned(),
            ),
            _ => (
                transport::UNKNOWN_ERROR.to_owned(),
                "unclassified SDK error".to_owned(),
            ),
        };
        // DisplayErrorContext walks the whole chain: the SDK's own Display says only "service error".
        let detail = aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string();
        let message = if message.is_empty() { detail } else { message };
        Self {
            code,
            message,
            status,
            unsent: false,
            source: Some(Box::new(err)),
        }
    }
}

/// The HTTP status of an SDK error's response, where there was one.
pub trait HttpStatus {
    /// The status code, or `None` when no response was received.
    fn http_status(&self) -> Option<u16>;
}

impl<E> HttpStatus for SdkError<E, aws_smithy_runtime_api::http::Response> {
    fn http_status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for AwsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
