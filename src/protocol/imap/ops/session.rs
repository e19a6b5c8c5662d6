//! Session commands: CAPABILITY, NOOP, STARTTLS, master login, LOGOUT.

use std::borrow::Cow;

use imap_codec::{
    AuthenticateDataCodec,
    encode::Encoder,
    imap_types::{
        auth::{AuthMechanism, AuthenticateData},
        command::{Command, CommandBody},
        core::Tag,
        response::Data,
        secret::Secret as WireSecret,
    },
};

use super::Operation;
use crate::protocol::imap::capabilities::Capabilities;
use crate::protocol::imap::error::{ImapError, Refusal};
use crate::protocol::imap::login::{LoginMethod, UserName};
use crate::protocol::imap::request::Request;
use crate::protocol::imap::response::{Completion, CompletionStatus, Untagged};
use crate::secret::Secret;

fn simple(tag: &Tag<'static>, body: CommandBody<'static>) -> Request {
    Request::from_command(&Command {
        tag: tag.clone(),
        body,
    })
}

/// `CAPABILITY`: asks for the capability list (the core records it).
#[derive(Debug, Default)]
pub struct Capability {
    seen: Option<Capabilities>,
}

impl Operation for Capability {
    type Output = Capabilities;

    fn command_name(&self) -> &'static str {
        "CAPABILITY"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        Ok(simple(tag, CommandBody::Capability))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        if let Untagged::Data(Data::Capability(caps)) = untagged {
            self.seen = Some(Capabilities::from_decoded(caps.as_ref()));
        }
        Ok(())
    }

    fn complete(self, completion: Completion) -> Result<Capabilities, ImapError> {
        completion.into_ok("CAPABILITY")?;
        self.seen.ok_or_else(|| ImapError::Protocol {
            expected: "an untagged CAPABILITY response".into(),
            got: "only the tagged OK".into(),
        })
    }
}

/// `NOOP`.
#[derive(Debug, Default)]
pub struct Noop;

impl Operation for Noop {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "NOOP"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        Ok(simple(tag, CommandBody::Noop))
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("NOOP").map(drop)
    }
}

/// `STARTTLS`; on success the driver must run the TLS handshake next.
#[derive(Debug, Default)]
pub struct StartTls;

impl Operation for StartTls {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "STARTTLS"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        if !caps.starttls() {
            return Err(ImapError::MissingCapability {
                capability: "STARTTLS",
                needed_for: "security `starttls`",
            });
        }
        Ok(simple(tag, CommandBody::StartTLS))
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("STARTTLS").map(drop)
    }

    fn invalidates_capabilities(&self) -> bool {
        true
    }
}

/// `LOGOUT`.
#[derive(Debug, Default)]
pub struct Logout;

impl Operation for Logout {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "LOGOUT"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        Ok(simple(tag, CommandBody::Logout))
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("LOGOUT").map(drop)
    }

    fn is_logout(&self) -> bool {
        true
    }
}

/// The master user logs in to act for `user`.
#[derive(Debug)]
pub struct Login {
    /// The user to act for.
    pub user: UserName,
    /// The master user's name.
    pub master_user: String,
    /// The master user's password.
    pub master_password: Secret<String>,
    /// LOGIN with separator, or SASL PLAIN.
    pub method: LoginMethod,
}

impl Login {
    fn encode_login(
        &self,
        tag: &Tag<'static>,
        caps: &Capabilities,
        separator: &str,
    ) -> Result<Request, ImapError> {
        if caps.login_disabled() {
            return Err(ImapError::LoginDisabled);
        }
        let username = format!("{}{separator}{}", self.user, self.master_user);
        let body =
            CommandBody::login(username, self.master_password.expose().clone()).map_err(|err| {
                match err {
                    imap_codec::imap_types::command::error::LoginError::Username(_) => {
                        ImapError::InvalidUserName {
                            user: self.user.to_string(),
                            reason: "cannot be sent as an IMAP string",
                        }
                    }
                    imap_codec::imap_types::command::error::LoginError::Password(_) => {
                        ImapError::InvalidPassword
                    }
                }
            })?;
        Ok(simple(tag, body))
    }

    fn encode_plain(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        if !caps.auth_plain() {
            return Err(ImapError::MissingCapability {
                capability: "AUTH=PLAIN",
                needed_for: "login method `sasl_plain`",
            });
        }
        let password = self.master_password.expose().as_bytes();
        if password.contains(&0) {
            return Err(ImapError::InvalidPassword);
        }
        // RFC 4616: authzid NUL authcid NUL passwd.
        let mut response = Vec::with_capacity(
            self.user.as_str().len() + self.master_user.len() + password.len() + 2,
        );
        response.extend_from_slice(self.user.as_str().as_bytes());
        response.push(0);
        response.extend_from_slice(self.master_user.as_bytes());
        response.push(0);
        response.extend_from_slice(password);

        if caps.sasl_ir() {
            let body = CommandBody::Authenticate {
                mechanism: AuthMechanism::Plain,
                initial_response: Some(WireSecret::new(Cow::Owned(response))),
            };
            return Ok(simple(tag, body));
        }
        let body = CommandBody::Authenticate {
            mechanism: AuthMechanism::Plain,
            initial_response: None,
        };
        let mut request = simple(tag, body);
        request.await_continuation();
        let data = AuthenticateData::Continue(WireSecret::new(Cow::Owned(response)));
        request.push_bytes(AuthenticateDataCodec::default().encode(&data).dump());
        Ok(request)
    }
}

impl Operation for Login {
    type Output = ();

    fn command_name(&self) -> &'static str {
        match self.method {
            LoginMethod::MasterSeparator { .. } => "LOGIN",
            LoginMethod::SaslPlain => "AUTHENTICATE PLAIN",
        }
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        if self.master_user.is_empty() || self.master_user.chars().any(char::is_control) {
            return Err(ImapError::InvalidUserName {
                user: self.master_user.escape_debug().to_string(),
                reason: "the master user name is empty or has control characters",
            });
        }
        match &self.method {
            LoginMethod::MasterSeparator { separator } => self.encode_login(tag, caps, separator),
            LoginMethod::SaslPlain => self.encode_plain(tag, caps),
        }
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        let refusal = match completion.status {
            CompletionStatus::Ok => return Ok(()),
            CompletionStatus::No => Refusal::No,
            CompletionStatus::Bad => Refusal::Bad,
        };
        Err(ImapError::AuthenticationFailed {
            user: self.user.to_string(),
            refusal,
            code: completion.response_code(),
            text: completion.text,
        })
    }

    fn invalidates_capabilities(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::imap::error::ResponseCode;
    use crate::protocol::imap::ops::transcript::Transcript;

    fn login(method: LoginMethod) -> Login {
        Login {
            user: UserName::parse(b"alice@example.org", &method).unwrap(),
            master_user: "restore".into(),
            master_password: Secret::new("s3cret".into()),
            method,
        }
    }

    #[test]
    fn master_separator_login() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
        let (sent, result) = t.run(
            login(LoginMethod::default()),
            "M1 OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] Logged in\r\n",
        );
        assert_eq!(sent, "M1 LOGIN \"alice@example.org*restore\" s3cret\r\n");
        result.unwrap();
        assert!(t.core.capabilities().multiappend());
        assert!(!t.core.capabilities_stale());
    }

    #[test]
    fn login_without_capability_code_leaves_capabilities_stale() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let (_, result) = t.run(login(LoginMethod::default()), "M1 OK Logged in\r\n");
        result.unwrap();
        assert!(t.core.capabilities_stale());
    }

    #[test]
    fn sasl_plain_with_initial_response() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n");
        let (sent, result) = t.run(login(LoginMethod::SaslPlain), "M1 OK Logged in\r\n");
        // base64("alice@example.org\0restore\0s3cret")
        assert_eq!(
            sent,
            "M1 AUTHENTICATE PLAIN YWxpY2VAZXhhbXBsZS5vcmcAcmVzdG9yZQBzM2NyZXQ=\r\n"
        );
        result.unwrap();
    }

    #[test]
    fn sasl_plain_waits_for_continuation_without_sasl_ir() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
        let (sent, result) = t.run(login(LoginMethod::SaslPlain), "+ \r\nM1 OK Logged in\r\n");
        assert_eq!(
            sent,
            "M1 AUTHENTICATE PLAIN\r\nYWxpY2VAZXhhbXBsZS5vcmcAcmVzdG9yZQBzM2NyZXQ=\r\n"
        );
        result.unwrap();
    }

    #[test]
    fn refused_login_is_a_permanent_authentication_error() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let (_, result) = t.run(
            login(LoginMethod::default()),
            "M1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        );
        let err = result.unwrap_err();
        assert!(
            matches!(
                &err,
                ImapError::AuthenticationFailed {
                    code: Some(ResponseCode::AuthenticationFailed),
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn refused_sasl_stops_before_sending_the_response() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
        let (sent, result) = t.run(
            login(LoginMethod::SaslPlain),
            "M1 NO [UNAVAILABLE] Internal error occurred.\r\n",
        );
        assert_eq!(sent, "M1 AUTHENTICATE PLAIN\r\n");
        let err = result.unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("does not exist in its userdb"),
            "{err}"
        );
    }

    #[test]
    fn login_disabled_is_refused_before_sending() {
        let t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n");
        let err = t
            .encode(&login(LoginMethod::default()))
            .expect_err("must refuse");
        assert!(matches!(err, ImapError::LoginDisabled));
    }

    #[test]
    fn starttls_needs_the_capability() {
        let t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        assert!(matches!(
            t.encode(&StartTls),
            Err(ImapError::MissingCapability { .. })
        ));
    }

    #[test]
    fn logout_expects_bye() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let (sent, result) = t.run(Logout, "* BYE Logging out\r\nM1 OK Logout completed.\r\n");
        assert_eq!(sent, "M1 LOGOUT\r\n");
        result.unwrap();
        assert!(t.core.is_closed());
    }

    #[test]
    fn capability_command_refreshes() {
        let mut t = Transcript::greeted("* OK hi\r\n");
        let (sent, result) = t.run(
            Capability::default(),
            "* CAPABILITY IMAP4rev1 UIDPLUS BINARY\r\nM1 OK done\r\n",
        );
        assert_eq!(sent, "M1 CAPABILITY\r\n");
        assert!(result.unwrap().uidplus());
        assert!(t.core.capabilities().binary());
    }
}
