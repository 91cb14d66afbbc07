//! The account and region the function serves.

use crate::aws::clients::AwsClients;
use crate::model::resource::Location;
use std::sync::Mutex;

/// The account and region of an invoked function's ARN
/// (`arn:<partition>:lambda:<region>:<account>:function:<name>`).
pub fn home_of(function_arn: &str) -> Option<Location> {
    let parts: Vec<&str> = function_arn.splitn(7, ':').collect();
    match parts[..] {
        ["arn", _, "lambda", region, account, "function", _] => Location::new(account, region).ok(),
        _ => None,
    }
}

/// The account and region the function serves. Lambda names them in the invoked function's
/// ARN; a local runtime may send a placeholder instead (`cargo lambda watch` sends
/// `function-arn`), and then they are those of the clients' credentials and region
/// (sts:GetCallerIdentity, asked once per container).
pub struct Home {
    clients: AwsClients,
    known: Mutex<Option<Location>>,
}

impl Home {
    /// A lookup that falls back to `clients`' identity.
    pub fn new(clients: AwsClients) -> Self {
        Self {
            clients,
            known: Mutex::new(None),
        }
    }

    /// The home for an invocation of `function_arn`, or `None` when it cannot be told.
    pub async fn of(&self, function_arn: &str) -> Option<Location> {
        if let Some(home) = home_of(function_arn) {
            return Some(home);
        }
        if let Some(home) = self.lock().clone() {
            return Some(home);
        }
        match self.clients.home().await {
            Ok(home) => {
                tracing::info!(
                    function_arn,
                    home = %home,
                    "the invoked function's ARN names no account; serving the credentials' own"
                );
                *self.lock() = Some(home.clone());
                Some(home)
            }
            Err(e) => {
                tracing::error!(function_arn, error = %e, "cannot tell the function's account");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Location>> {
        crate::sync::lock(&self.known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_the_function_arn() {
        let home = home_of("arn:aws:lambda:eu-west-1:123456789012:function:enforcer").unwrap();
        assert_eq!(
            (
                home.account.as_str(),
                home.region.as_str(),
                home.partition.as_str()
            ),
            ("123456789012", "eu-west-1", "aws")
        );
        assert!(home_of("function-arn").is_none());
        assert!(home_of("arn:aws:lambda:eu-west-1:123:function:x").is_none());
    }
}
