//! `loft status`.

use anyhow::Result;

use crate::session::Session;

/// Prints whether the server is reachable and who this device is.
pub async fn status(session: &Session, json: bool) -> Result<()> {
    let who = session.client.who_am_i().await;
    // Online: the server answered, even if only to refuse the token.
    let online = match &who {
        Ok(_) => true,
        Err(error) => !error.is_unavailable(),
    };
    let signed_in = who.is_ok();
    let error = who.as_ref().err().map(|e| e.to_string());
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
                "online": online, "signed_in": signed_in, "error": error,
                "server": session.grpc.current_address(), "servers": session.config.servers,
                "user": user, "device": device,
                "embedded": session.config.servers.is_empty(),
                "home": session.home.config_dir.display().to_string(),
            })
        );
    } else {
        println!(
            "server: {} ({})",
            session.grpc.current_address(),
            match (online, signed_in) {
                (true, true) => "online",
                (true, false) => "online, not signed in",
                (false, _) => "offline",
            }
        );
        println!("user:   {user}");
        println!("device: {device}");
        println!("home:   {}", session.home.config_dir.display());
        if let Some(error) = error {
            println!("error:  {error}");
        }
    }
    Ok(())
}
