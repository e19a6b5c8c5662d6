//! Following a job until it ends, with a progress bar on the terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::{Failure, percent_encode};
use crate::api::client::ApiClient;

/// Polls the job until it has ended; draws messages, MB, calendar and
/// contact items, rate and ETA on
/// stderr unless `quiet` (JSON output) or stderr is not a terminal.
pub async fn follow(api: &ApiClient, mut job: Value, quiet: bool) -> Result<Value, Failure> {
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} msgs, {prefix} ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let state = job["state"].as_str().unwrap_or_default().to_string();
        let m = &job["progress"]["messages"];
        bar.set_length(m["total"].as_u64().unwrap_or(0));
        bar.set_position(m["done"].as_u64().unwrap_or(0));
        let mut prefix = super::output::mb(job["progress"]["bytes"]["done"].as_u64().unwrap_or(0));
        let items = &job["progress"]["items"];
        if items["total"].as_u64().unwrap_or(0) > 0 {
            prefix.push_str(&format!(
                ", {}/{} calendar and contact items",
                items["done"].as_u64().unwrap_or(0),
                items["total"].as_u64().unwrap_or(0)
            ));
        }
        bar.set_prefix(prefix);
        bar.set_message(format!(
            "{state} {}",
            job["target"]["folder"].as_str().unwrap_or_default()
        ));
        if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
            bar.finish_and_clear();
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        job = api
            .get(&format!("/v1/jobs/{}", percent_encode(&id)))
            .await?;
    }
}
