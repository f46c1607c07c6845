//! `bhatti user create|list|delete|rotate-key`: operator commands that work
//! on the store in the data directory, with or without a running daemon.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bhatti_server::users::{self, IssuedKey};
use bhatti_store::Store;
use bhatti_store::users::{Limits, User};
use clap::Subcommand;
use serde_json::json;

use crate::output;

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user and print its API key (shown only this once).
    Create {
        /// User name: [a-zA-Z0-9][a-zA-Z0-9._-]{0,62}.
        #[arg(long)]
        name: String,
        /// Most live sandboxes the user may have.
        #[arg(long, default_value_t = Limits::default().max_sandboxes)]
        max_sandboxes: u32,
        /// Most CPUs per sandbox.
        #[arg(long, default_value_t = Limits::default().max_cpus)]
        max_cpus: u32,
        /// Most memory per sandbox, MB (v1's name: --max-memory).
        #[arg(long, visible_alias = "max-memory", value_name = "MB", default_value_t = Limits::default().max_memory_mb)]
        max_memory_mb: u32,
        /// Most disk space the user's snapshots may take, MB.
        #[arg(long, value_name = "MB", default_value_t = Limits::default().max_storage_mb)]
        max_storage_mb: u32,
    },
    /// List users and their limits.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a user (refused while they own sandboxes or volumes).
    #[command(visible_alias = "rm")]
    Delete {
        /// User name.
        name: String,
    },
    /// Issue a new API key; the old one stops working at once.
    RotateKey {
        /// User name.
        name: String,
    },
}

pub fn run(data_dir: &Path, json_out: bool, action: UserAction) -> anyhow::Result<()> {
    let store = open(data_dir, matches!(action, UserAction::Create { .. }))?;
    match action {
        UserAction::Create {
            name,
            max_sandboxes,
            max_cpus,
            max_memory_mb,
            max_storage_mb,
        } => {
            let limits = Limits {
                max_sandboxes,
                max_cpus,
                max_memory_mb,
                max_storage_mb,
            };
            let issued = users::create(&store, &name, limits, now())?;
            print_issued(&issued, json_out);
        }
        UserAction::List => {
            let list = store.list_users()?;
            if json_out {
                let v: Vec<_> = list.iter().map(user_json).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            u.id.clone(),
                            u.limits.max_sandboxes.to_string(),
                            u.limits.max_cpus.to_string(),
                            u.limits.max_memory_mb.to_string(),
                            u.limits.max_storage_mb.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &["NAME", "ID", "SANDBOXES", "CPUS", "MEMORY_MB", "STORAGE_MB"],
                    &rows,
                );
            }
        }
        UserAction::Delete { name } => {
            store.delete_user(&name)?;
            if json_out {
                println!("{}", json!({"status": "deleted", "name": name}));
            } else {
                println!("deleted user {name}");
            }
        }
        UserAction::RotateKey { name } => {
            let issued = users::rotate_key(&store, &name)?;
            print_issued(&issued, json_out);
        }
    }
    Ok(())
}

fn open(data_dir: &Path, create: bool) -> anyhow::Result<Store> {
    if create {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create data dir {}", data_dir.display()))?;
    } else if !data_dir.is_dir() {
        anyhow::bail!(
            "data dir {} does not exist (pass --data-dir or set BHATTI_DATA_DIR)",
            data_dir.display()
        );
    }
    Ok(Store::open(&data_dir.join("state.db"))?)
}

fn print_issued(issued: &IssuedKey, json_out: bool) {
    if json_out {
        let mut v = user_json(&issued.user);
        v["key"] = json!(issued.key);
        println!("{v}");
    } else {
        println!("user:  {} ({})", issued.user.name, issued.user.id);
        println!("key:   {}", issued.key);
        eprintln!("The key is shown only once; store it now.");
    }
}

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "name": u.name,
        "max_sandboxes": u.limits.max_sandboxes,
        "max_cpus": u.limits.max_cpus,
        "max_memory_mb": u.limits.max_memory_mb,
        "max_storage_mb": u.limits.max_storage_mb,
        "created_at": u.created_at,
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
