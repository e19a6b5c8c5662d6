//! Who the schedule knows: `schedule.users`, or the lines printed by
//! `schedule.users_command` (e.g. `doveadm user '*'`).

use std::time::Duration;

use crate::config::ScheduleConfig;

/// Why the user list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The command could not be run.
    #[error("schedule.users_command could not run: {0}")]
    Spawn(std::io::Error),
    /// It failed.
    #[error("schedule.users_command exited with {status}: {stderr}")]
    Failed {
        /// Exit status.
        status: String,
        /// What it printed on stderr (first lines).
        stderr: String,
    },
    /// It took too long.
    #[error("schedule.users_command did not finish within {0:?}")]
    Timeout(Duration),
}

/// The users the schedule covers, deduplicated, in the listed order.
pub async fn users(config: &ScheduleConfig) -> Result<Vec<String>, UsersError> {
    let listed = match &config.users_command {
        None => config.users.clone(),
        Some(cmd) => run_command(cmd).await?,
    };
    let mut seen = std::collections::HashSet::new();
    Ok(listed
        .into_iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && seen.insert(u.clone()))
        .collect())
}

async fn run_command(cmd: &str) -> Result<Vec<String>, UsersError> {
    let limit = Duration::from_secs(120);
    let child = tokio::process::Command::new("/bin/sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .map_err(|_| UsersError::Timeout(limit))?
        .map_err(UsersError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(UsersError::Failed {
            status: out.status.to_string(),
            stderr: stderr.lines().take(5).collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(users: &[&str], command: Option<&str>) -> ScheduleConfig {
        ScheduleConfig {
            interval: None,
            users: users.iter().map(|s| s.to_string()).collect(),
            users_command: command.map(str::to_string),
            concurrency: 1,
            spread: std::time::Duration::from_secs(1),
            first_round_after: std::time::Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn lists_from_config_or_command() {
        assert_eq!(
            users(&cfg(&["a@x", "b@x", "a@x"], None)).await.unwrap(),
            vec!["a@x", "b@x"]
        );
        let from_cmd = users(&cfg(&[], Some("printf 'a@x\\n\\nb@x extra\\n'")))
            .await
            .unwrap();
        assert_eq!(from_cmd, vec!["a@x", "b@x"]);
        let err = users(&cfg(&[], Some("echo boom >&2; exit 3")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
