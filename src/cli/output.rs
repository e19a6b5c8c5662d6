//! Rendering of API answers for people (tables, summaries) or as JSON.
//!
//! The CLI reads the daemon's JSON as `serde_json::Value` so that a newer
//! daemon with extra fields never breaks an older CLI.

use serde_json::Value;

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Megabytes with one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `GET /v1/health`
pub fn health(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    println!(
        "status: {}   version {}   up {}s   jobs: {} queued, {} running",
        s(&v["status"]),
        s(&v["version"]),
        s(&v["uptime_seconds"]),
        s(&v["jobs"]["queued"]),
        s(&v["jobs"]["running"])
    );
    if let Some(backends) = v["backends"].as_object() {
        for (name, b) in backends {
            let mut line = format!("  {name:<6} {:<15}", s(&b["state"]));
            if let Some(a) = b["address"].as_str() {
                line.push_str(&format!(" {a}"));
            }
            if let Some(ms) = b["latency_ms"].as_u64() {
                line.push_str(&format!(" ({ms} ms)"));
            }
            if let Some(e) = b["error"].as_str() {
                line.push_str(&format!(" — {e}"));
            }
            println!("{line}");
        }
    }
}

fn progress(job: &Value) -> String {
    let p = &job["progress"];
    let mut parts = Vec::new();
    let m = &p["messages"];
    if m["total"].as_u64().unwrap_or(0) > 0 || m["done"].as_u64().unwrap_or(0) > 0 {
        parts.push(format!("{}/{} msgs", s(&m["done"]), s(&m["total"])));
    }
    let b = &p["bytes"];
    if b["done"].as_u64().unwrap_or(0) > 0 {
        parts.push(mb(b["done"].as_u64().unwrap_or(0)));
    }
    let i = &p["items"];
    if i["total"].as_u64().unwrap_or(0) > 0 || i["done"].as_u64().unwrap_or(0) > 0 {
        parts.push(format!("{}/{} items", s(&i["done"]), s(&i["total"])));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// `GET /v1/jobs`
pub fn jobs(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    let empty = Vec::new();
    let list = v["jobs"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:<8} {:<9} {:<30} {:<10} {:<22} PROGRESS",
        "ID", "KIND", "USER", "STATE", "CREATED"
    );
    for j in list {
        println!(
            "{:<8} {:<9} {:<30} {:<10} {:<22} {}",
            s(&j["id"]),
            s(&j["kind"]),
            s(&j["user"]),
            s(&j["state"]),
            s(&j["created_at"]).chars().take(20).collect::<String>(),
            progress(j)
        );
    }
}

/// `GET /v1/jobs/{id}`
pub fn job(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    println!(
        "job {} ({}) for {}: {}",
        s(&v["id"]),
        s(&v["kind"]),
        s(&v["user"]),
        s(&v["state"])
    );
    for key in ["point", "scope", "requested_by"] {
        if !v[key].is_null() {
            println!("  {key:<13} {}", s(&v[key]));
        }
    }
    if let Some(f) = v["target"]["folder"].as_str() {
        println!("  folder        {f}");
    }
    for key in ["calendars", "addressbooks"] {
        if let Some(list) = v["target"][key].as_array() {
            for href in list {
                println!("  {key:<13} {}", s(href));
            }
        }
    }
    println!("  progress      {}", progress(v));
    for key in ["created_at", "started_at", "finished_at"] {
        if !v[key].is_null() {
            println!("  {key:<13} {}", s(&v[key]));
        }
    }
    if let Some(w) = v["warnings"].as_array() {
        for w in w {
            println!("  warning       {}", s(w));
        }
    }
    if !v["error"].is_null() {
        println!(
            "  error         {} ({})",
            s(&v["error"]["message"]),
            s(&v["error"]["code"])
        );
    }
}

/// `GET /v1/users/{user}/points`
pub fn points(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    let empty = Vec::new();
    let list = v["points"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("no restore points for {}", s(&v["user"]));
        return;
    }
    println!(
        "{:<20} {:<22} {:>8} {:>9} {:>11} {:>10} {:>9}",
        "POINT", "TAKEN AT", "FOLDERS", "MESSAGES", "SIZE", "CALENDARS", "CONTACTS"
    );
    for p in list {
        println!(
            "{:<20} {:<22} {:>8} {:>9} {:>11} {:>10} {:>9}",
            s(&p["id"]),
            s(&p["taken_at"]),
            s(&p["mail"]["folders"]),
            s(&p["mail"]["messages"]),
            mb(p["mail"]["bytes"].as_u64().unwrap_or(0)),
            s(&p["calendars"]["items"]),
            s(&p["contacts"]["items"])
        );
    }
}

/// `POST /v1/prune`
pub fn prune(v: &Value, json: bool) {
    if json {
        return print_json(v);
    }
    let dry = v["dry_run"].as_bool().unwrap_or(false);
    let empty = Vec::new();
    let removed = v["removed"].as_array().unwrap_or(&empty);
    for r in removed {
        println!("{} {}", if dry { "would remove" } else { "removed" }, s(r));
    }
    let before = v["bytes_before"].as_u64().unwrap_or(0);
    let after = v["bytes_after"].as_u64().unwrap_or(0);
    println!(
        "{} points {}, {} kept; packs: {} deleted, {} rewritten; store {} -> {} ({} {})",
        removed.len(),
        if dry { "to remove" } else { "removed" },
        s(&v["kept"]),
        s(&v["packs_deleted"]),
        s(&v["packs_rewritten"]),
        mb(before),
        mb(after),
        mb(before.saturating_sub(after)),
        if dry { "would come back" } else { "reclaimed" }
    );
}
