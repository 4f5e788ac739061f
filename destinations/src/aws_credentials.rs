//! AWS credentials as the S3 and Kinesis clients look for them, and the
//! one line that says none were found.
//!
//! Without credentials the SDK fails each request with a dispatch failure
//! whose text is the whole provider chain, about a thousand characters,
//! and which looks like a connection problem (so a retry). Here it becomes
//! a permanent problem in one line saying where credentials are looked for.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;

/// Where the standard chain looks, in order.
pub const WHERE_CREDENTIALS_ARE_LOOKED_FOR: &str = "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), \
     the shared files (~/.aws/credentials, ~/.aws/config, or AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE; \
     profile AWS_PROFILE), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint \
     and EC2 instance metadata";

/// Credentials that cannot be had: retrying does not help until someone
/// changes the environment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsProblem {
    #[error("no AWS credentials found: looked in {WHERE_CREDENTIALS_ARE_LOOKED_FOR}")]
    NotFound,
    /// A profile that cannot be used (a syntax error, a role loop).
    #[error("the AWS credentials configuration is invalid: {0}")]
    Invalid(String),
}

/// The credentials problem somewhere in `err`'s chain of causes, if it is
/// one that a retry cannot fix (a provider that timed out or failed
/// transiently is not).
pub fn find_in_chain(err: &(dyn StdError + 'static)) -> Option<CredentialsProblem> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(credentials) = current.downcast_ref::<CredentialsError>() {
            return permanent(credentials);
        }
        cause = current.source();
    }
    None
}

fn permanent(err: &CredentialsError) -> Option<CredentialsProblem> {
    match err {
        CredentialsError::CredentialsNotLoaded(_) => Some(CredentialsProblem::NotFound),
        CredentialsError::InvalidConfiguration(_) => {
            let reason = err.source().map_or_else(|| err.to_string(), ToString::to_string);
            Some(CredentialsProblem::Invalid(
                crate::redact::text_for_logs(&reason).into_owned(),
            ))
        }
        _ => None,
    }
}

/// Resolves credentials from the standard chain, as a client of `region`
/// would, so that a missing credential is reported at start in one line.
/// Failures that may pass (a provider that timed out) are left to the
/// client's own retries.
pub async fn check(region: Option<&str>) -> Result<(), CredentialsProblem> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let shared = loader.load().await;
    let Some(provider) = shared.credentials_provider() else {
        return Err(CredentialsProblem::NotFound);
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(err) => match permanent(&err) {
            Some(problem) => Err(problem),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_credential_is_found_under_other_errors() {
        #[derive(Debug)]
        struct Outer(CredentialsError);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let missing = Outer(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        ));
        assert_eq!(find_in_chain(&missing), Some(CredentialsProblem::NotFound));
        let timed_out = Outer(CredentialsError::provider_timed_out(std::time::Duration::from_secs(5)));
        assert_eq!(find_in_chain(&timed_out), None);
        let line = CredentialsProblem::NotFound.to_string();
        assert!(
            line.starts_with("no AWS credentials found: looked in the environment"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
