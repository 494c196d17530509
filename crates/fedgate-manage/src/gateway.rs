//! Get/Set-CsXmppGatewayConfiguration: the one global instance of the gateway-wide settings.

use fedgate_model::XmppGatewayConfiguration;

use crate::params::GatewayChanges;
use crate::{ManageError, Manager, Mode, Outcome, what_if_text};

impl Manager<'_> {
    pub fn get_gateway_configuration(&self) -> Result<XmppGatewayConfiguration, ManageError> {
        Ok(self.store.gateway_configuration()?)
    }

    /// Set-CsXmppGatewayConfiguration. With `instance`, that object's values are the base.
    pub fn set_gateway_configuration(
        &self,
        instance: Option<&XmppGatewayConfiguration>,
        changes: &GatewayChanges,
        mode: Mode,
    ) -> Result<Outcome<XmppGatewayConfiguration>, ManageError> {
        const CMD: &str = "Set-CsXmppGatewayConfiguration";
        let stored = self.store.gateway_configuration()?;
        let mut config = match instance {
            Some(i) => {
                let mut c = i.clone();
                // An exported object never carries the secret: keep the stored one.
                if c.dialback_passphrase.is_none() {
                    c.dialback_passphrase = stored.dialback_passphrase.clone();
                }
                c
            }
            None => stored,
        };
        for (name, value) in &changes.numeric {
            if let Some(field) = config.numeric_mut(name) {
                *field = *value;
            }
        }
        if let Some(secret) = &changes.dialback_passphrase {
            config.dialback_passphrase = Some(secret.clone());
        }
        if let Some(v) = changes.enable_logging_all_message_bodies {
            config.enable_logging_all_message_bodies = v;
        }
        let mut warnings = Vec::new();
        if config.keep_alive_interval > config.stream_inactivity_timeout {
            warnings.push(format!(
                "KeepAliveInterval ({}) is longer than StreamInactivityTimeout ({}): idle streams close before a keepalive is due.",
                config.keep_alive_interval, config.stream_inactivity_timeout
            ));
        }
        if config.partner_connection_limit > config.connection_limit {
            warnings.push(format!(
                "PartnerConnectionLimit ({}) is above ConnectionLimit ({}): the gateway-wide limit applies first.",
                config.partner_connection_limit, config.connection_limit
            ));
        }
        if mode != Mode::Commit {
            return Ok(Outcome {
                value: config,
                version: 0,
                warnings,
                what_if: Some(what_if_text(CMD, "Global")),
            });
        }
        self.store
            .set_gateway_configuration(&config, &self.audit(CMD))?;
        Ok(Outcome {
            value: config,
            version: 0,
            warnings,
            what_if: None,
        })
    }
}
