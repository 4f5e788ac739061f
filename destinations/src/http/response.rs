//! The response: only a 200 whose JSON body echoes the request id counts.

use super::error::{HttpError, HttpErrorKind};

/// The part of a response body that is kept in an error message.
const EXCERPT_BYTES: usize = 512;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseBody {
    request_id: Option<String>,
}

/// Checks one response to the request `request_id`.
pub(super) fn check(status: u16, body: &[u8], request_id: &str) -> Result<(), HttpError> {
    if status != 200 {
        return Err(HttpError::new(
            HttpErrorKind::Status(status),
            format!("the endpoint answered {status}: {}", excerpt(body)),
        ));
    }
    match serde_json::from_slice::<ResponseBody>(body) {
        Ok(ResponseBody {
            request_id: Some(echoed),
        }) if echoed == request_id => Ok(()),
        Ok(ResponseBody {
            request_id: Some(echoed),
        }) => Err(HttpError::new(
            HttpErrorKind::InvalidResponse,
            format!("the endpoint answered 200 for request {echoed:?}, not {request_id:?}"),
        )),
        Ok(ResponseBody { request_id: None }) => Err(HttpError::new(
            HttpErrorKind::InvalidResponse,
            format!("the endpoint answered 200 without a requestId: {}", excerpt(body)),
        )),
        Err(err) => Err(HttpError::new(
            HttpErrorKind::InvalidResponse,
            format!(
                "the endpoint answered 200 with a body that is not a response ({err}): {}",
                excerpt(body)
            ),
        )),
    }
}

fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > EXCERPT_BYTES {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_echoing_the_request_id_is_success() {
        assert!(check(200, br#"{"requestId":"r1","timestamp":1}"#, "r1").is_ok());
        let wrong = check(200, br#"{"requestId":"r2","timestamp":1}"#, "r1").unwrap_err();
        assert_eq!(wrong.kind, HttpErrorKind::InvalidResponse);
        assert_eq!(
            check(200, b"ok", "r1").unwrap_err().kind,
            HttpErrorKind::InvalidResponse
        );
        assert_eq!(
            check(200, b"{}", "r1").unwrap_err().kind,
            HttpErrorKind::InvalidResponse
        );
        let busy = check(503, b"slow down", "r1").unwrap_err();
        assert_eq!(busy.kind, HttpErrorKind::Status(503));
        assert!(busy.is_retryable());
        assert!(busy.message.contains("slow down"));
        let too_large = check(413, b"", "r1").unwrap_err();
        assert!(!too_large.is_retryable());
        assert!(!check(204, b"", "r1")
            .unwrap_err()
            .kind
            .eq(&HttpErrorKind::InvalidResponse));
    }
}
