//! The operator's commands, with the conventions of Kafka's own tools: `inkless topics`
//! (kafka-topics.sh) and `inkless groups` (kafka-consumer-groups.sh) speak the Kafka
//! protocol to any broker named by `--bootstrap-server`; `inkless cluster drain` marks a
//! node draining through any node's admin endpoint (ADR 0021).
//!
//! Each command prints what Kafka's tool prints for the same state; a Kafka error is one
//! line on standard error and exit status 1.

mod client;
mod drain;
mod groups;
mod reset;
mod table;
mod topics;

pub use drain::{run_drain, DrainArgs};
pub use groups::{run_groups, GroupsArgs};
pub use topics::{run_topics, TopicsArgs};

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// Why an ops command failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A broker answered with a Kafka error code.
    #[error("{context}: {message} ({name})")]
    Kafka {
        /// What was asked.
        context: String,
        /// Kafka's name of the error (TOPIC_ALREADY_EXISTS).
        name: String,
        /// The broker's message, or the name again.
        message: String,
    },
    /// The command refused to act, as Kafka's tool does (the message is Kafka's).
    #[error("{0}")]
    Refused(String),
    /// The arguments do not make a command.
    #[error("{0}")]
    Usage(String),
    /// A connection failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// An answer could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A broker did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The admin endpoint refused or failed.
    #[error("{0}")]
    Admin(String),
}

/// `Ok` for error code 0, else [`OpsError::Kafka`].
pub(crate) fn kafka_error(context: &str, code: i16, message: Option<&str>) -> Result<(), OpsError> {
    if code == 0 {
        return Ok(());
    }
    let name = crate::metrics::error_name(code);
    Err(OpsError::Kafka {
        context: context.to_string(),
        message: message
            .filter(|m| !m.is_empty())
            .unwrap_or(&name)
            .to_string(),
        name,
    })
}

/// A topic name for a request.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Runs an ops command on a current-thread runtime; prints its error and exits 1 on
/// failure, as Kafka's tools do.
pub fn run_command(fut: impl std::future::Future<Output = Result<(), OpsError>>) -> ! {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1)
        }
    };
    match rt.block_on(fut) {
        Ok(()) => std::process::exit(0),
        Err(OpsError::Usage(m)) => {
            eprintln!("{m}");
            std::process::exit(2)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1)
        }
    }
}
