//! `loft quota`.

use anyhow::Result;
use loft_remote::units::format_size;

use crate::session::Session;

/// Prints the bytes that count toward the user's quota (every version, current, kept
/// and in the trash, of what it owns) and the quota.
pub async fn quota(session: &Session, json: bool) -> Result<()> {
    let quota = session.client.quota().await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "used": quota.used, "quota": quota.quota })
        );
        return Ok(());
    }
    match quota.quota {
        Some(limit) => {
            let percent = if limit == 0 {
                100.0
            } else {
                quota.used as f64 * 100.0 / limit as f64
            };
            println!(
                "{} of {} used ({percent:.0}%), {} free",
                format_size(quota.used),
                format_size(limit),
                format_size(limit.saturating_sub(quota.used))
            );
        }
        None => println!("{} used, no quota", format_size(quota.used)),
    }
    Ok(())
}
