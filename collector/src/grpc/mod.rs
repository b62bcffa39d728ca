//! The gRPC listeners: TLS acceptors, frame checks, ingest sessions, enrollment
//! and renewal.

pub(crate) mod enroll;
pub(crate) mod ingest;
pub(crate) mod ratelimit;
pub(crate) mod tls;
pub(crate) mod validate;

#[cfg(test)]
mod tests {
    /// Status constructors that must not appear in product code.
    const CONSTRUCTORS: [&str; 18] = [
        "new",
        "invalid_argument",
        "unavailable",
        "resource_exhausted",
        "unauthenticated",
        "permission_denied",
        "failed_precondition",
        "internal",
        "out_of_range",
        "not_found",
        "already_exists",
        "aborted",
        "unknown",
        "unimplemented",
        "data_loss",
        "deadline_exceeded",
        "with_details",
        "with_metadata",
    ];

    /// The product-code lines of the collector's sources that call one of `ctors`.
    fn status_constructors(ctors: &[&str]) -> (usize, Vec<String>) {
        let mut found = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                files += 1;
                let src = std::fs::read_to_string(&p).unwrap();
                // Product code only: what follows a file's test module is not sent.
                let product = src.split("#[cfg(test)]").next().unwrap_or("");
                for (n, line) in product.lines().enumerate() {
                    for c in ctors {
                        if line.contains(&format!("Status::{c}(")) {
                            found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        (files, found)
    }

    /// Issue 11 item 4: every refusal a remote peer receives is built from the one
    /// table in `tandem_proto::Refusal` (its code, its metadata, a message about the
    /// peer's input), never from a `Status` constructor here. `Status::cancelled`
    /// is allowed: it marks a session whose peer has gone (nobody reads it).
    #[test]
    fn refusals_sent_to_peers_come_from_the_one_table() {
        let (files, found) = status_constructors(&CONSTRUCTORS);
        assert!(files > 20, "the walk read the sources ({files} files)");
        assert!(
            found.is_empty(),
            "statuses built outside tandem_proto::Refusal:\n{}",
            found.join("\n")
        );
        // The walk sees a constructor where there is one.
        let (_, cancelled) = status_constructors(&["cancelled"]);
        assert!(
            cancelled.iter().any(|l| l.contains("grpc/ingest.rs")),
            "{cancelled:?}"
        );
    }
}
