//! `loft status`.

use anyhow::Result;

use crate::session::Session;

/// Prints whether the server is reachable and who this device is.
pub async fn status(session: &Session, json: bool) -> Result<()> {
    let who = session.client.who_am_i().await;
    let online = who.is_ok();
    let (user, device) = match &who {
        Ok(s) => (s.user.clone(), s.device_name.clone()),
        Err(_) => (
            session.config.user.clone().unwrap_or_default(),
            session.config.device.clone().unwrap_or_default(),
        ),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "online": online, "server": session.address.to_string(), "user": user, "device": device,
                "embedded": session.config.servers.is_empty(),
                "home": session.home.config_dir.display().to_string(),
            })
        );
    } else {
        println!(
            "server: {} ({})",
            session.address,
            if online { "online" } else { "offline" }
        );
        println!("user:   {user}");
        println!("device: {device}");
        println!("home:   {}", session.home.config_dir.display());
        if let Err(error) = who {
            println!("error:  {error}");
        }
    }
    Ok(())
}
