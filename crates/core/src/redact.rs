//! Keeping camera credentials out of everything streamer writes.
//!
//! Camera URLs carry passwords (`rtsp://admin:hunter2@10.0.0.5/stream1`).
//! Every log line, error, `/health` body, MQTT payload and `check-config`
//! report that could show a URL passes it through [`redact_urls`] first.

/// `text` with the password of every `scheme://user:password@host` URL in
/// it replaced by `***` (`rtsp://user:***@host/...`). A user part without a
/// password (often a token) is replaced as a whole (`rtsp://***@host`).
/// Text without URLs comes back unchanged.
///
/// ```
/// use streamer_core::redact_urls;
/// assert_eq!(
///     redact_urls("cannot open rtsp://admin:s3cret@10.0.0.5:554/h264 (timeout)"),
///     "cannot open rtsp://admin:***@10.0.0.5:554/h264 (timeout)"
/// );
/// ```
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query, fragment or anything that
        // cannot be part of a URL in running text.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str("***"),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            redact_urls(
                "rtsp://admin:p%40ss:word@cam.lan:554/Streaming/Channels/101?transport=tcp"
            ),
            "rtsp://admin:***@cam.lan:554/Streaming/Channels/101?transport=tcp"
        );
        assert_eq!(redact_urls("rtsp://token@cam/x"), "rtsp://***@cam/x");
        assert_eq!(redact_urls("rtsp://cam.lan/live"), "rtsp://cam.lan/live");
        assert_eq!(
            redact_urls("a rtsp://u:p@h b rtsp://v:q@i"),
            "a rtsp://u:***@h b rtsp://v:***@i"
        );
        assert_eq!(
            redact_urls("location=\"rtsp://u:pw@h:8554/a\""),
            "location=\"rtsp://u:***@h:8554/a\""
        );
        assert_eq!(redact_urls("no url here: a@b"), "no url here: a@b");
        assert_eq!(redact_urls("trailing ://"), "trailing ://");
    }
}
