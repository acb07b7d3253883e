//! What a control instance is started with: address, store, report lifetime, tokens.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ControlError;
use crate::store::StoreLocation;

/// How long a report counts as fresh unless told otherwise.
pub const DEFAULT_REPORT_TTL: Duration = Duration::from_secs(5);
/// How often a watch stream says "still here" when it has nothing else to send.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// The settings of [`crate::Control::start`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (port 0 picks a free port; see [`crate::Control::addr`]).
    pub listen: SocketAddr,
    /// Where pins and registrations are kept across restarts.
    pub store: StoreLocation,
    /// A report older than this no longer counts: its row shows nothing (`source: none`).
    pub report_ttl: Duration,
    /// The heartbeat period of watch streams.
    pub heartbeat: Duration,
    /// The bearer tokens of the three roles.
    pub tokens: Tokens,
}

impl Settings {
    /// Defaults around `listen` and `store`: 5 s report lifetime, 5 s heartbeat, no tokens.
    pub fn new(listen: SocketAddr, store: StoreLocation) -> Self {
        Self {
            listen,
            store,
            report_ttl: DEFAULT_REPORT_TTL,
            heartbeat: DEFAULT_HEARTBEAT,
            tokens: Tokens::default(),
        }
    }
}

/// A bearer token. Its `Debug` hides the value so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bunsan_core::secret::constant_time_eq(presented, self.0.as_bytes())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Agents: registration and reports.
    Agent,
    /// Subscribers: subscription, state, watch, assign.
    Subscriber,
    /// Operators: pins and the registry; an operator may also do what the others do.
    Operator,
}

impl Role {
    /// The role's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Subscriber => "subscriber",
            Self::Operator => "operator",
        }
    }
}

/// The tokens of the three roles. A role without a token is open, which
/// [`Tokens::check`] allows only on a loopback address.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// For agents.
    pub agent: Option<Token>,
    /// For subscribers.
    pub subscriber: Option<Token>,
    /// For operators (also accepted wherever the others are).
    pub operator: Option<Token>,
}

impl Tokens {
    fn of(&self, role: Role) -> Option<&Token> {
        match role {
            Role::Agent => self.agent.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
            Role::Operator => self.operator.as_ref(),
        }
    }

    /// Refuses empty tokens, and missing ones when `listen` is reachable from elsewhere.
    pub fn check(&self, listen: SocketAddr) -> Result<(), ControlError> {
        let roles = [Role::Agent, Role::Subscriber, Role::Operator];
        if let Some(role) = roles.into_iter().find(|r| self.of(*r).is_some_and(|t| t.0.is_empty())) {
            return Err(ControlError::EmptyToken { role: role.as_str() });
        }
        if listen.ip().is_loopback() {
            return Ok(());
        }
        let missing: Vec<String> = roles
            .into_iter()
            .filter(|r| self.of(*r).is_none())
            .map(|r| format!("the {} token", r.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ControlError::MissingTokens { addr: listen, missing: missing.join(" and ") })
    }

    /// Whether `presented` (the bearer token of a request, if any) may act as `role`.
    pub fn allows(&self, role: Role, presented: Option<&[u8]>) -> bool {
        let Some(own) = self.of(role) else { return true };
        let presented = presented.unwrap_or_default();
        // Both comparisons always run, so timing does not tell which token was close.
        let as_role = own.matches(presented);
        let as_operator = self.operator.as_ref().is_some_and(|t| t.matches(presented));
        as_role | as_operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Tokens {
        Tokens {
            agent: Some(Token::new("a")),
            subscriber: Some(Token::new("s")),
            operator: Some(Token::new("o")),
        }
    }

    #[test]
    fn operator_may_act_as_anyone_but_not_the_reverse() {
        let tokens = all();
        assert!(tokens.allows(Role::Agent, Some(b"a")));
        assert!(tokens.allows(Role::Agent, Some(b"o")));
        assert!(!tokens.allows(Role::Agent, Some(b"s")));
        assert!(!tokens.allows(Role::Operator, Some(b"a")));
        assert!(!tokens.allows(Role::Subscriber, None));
        assert!(Tokens::default().allows(Role::Operator, None));
    }

    #[test]
    fn non_loopback_needs_every_token() {
        let open: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert!(Tokens::default().check(local).is_ok());
        assert!(all().check(open).is_ok());
        let partial = Tokens { operator: None, ..all() };
        let error = partial.check(open).unwrap_err().to_string();
        assert!(error.contains("without the operator token"), "{error}");
        let empty = Tokens { agent: Some(Token::new("")), ..all() };
        assert!(matches!(empty.check(local), Err(ControlError::EmptyToken { role: "agent" })));
    }

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(format!("{:?}", Token::new("hunter2")), "Token(***)");
    }
}
