//! Maps a routing key (`<type>.<division>`) to the queues subscribed to it, built in code.
//! The hub routes by the declarative [`RouteTable`]; a `Router` converts into one (a rule per
//! queue, no predicate), which is how tests build a bus.
//!
//! Patterns use AMQP topic syntax so that the embedded bus and a broker route alike: words are
//! separated by `.`, `*` matches exactly one word and `#` matches zero or more words.

use crate::table::{RouteTable, Rule};

/// A queue and the routing-key patterns it subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub queue: String,
    pub patterns: Vec<String>,
}

/// The queues of the bus and what each receives.
#[derive(Debug, Clone, Default)]
pub struct Router {
    subscriptions: Vec<Subscription>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds (or replaces) a queue's subscription.
    pub fn subscribe(&mut self, queue: &str, patterns: &[&str]) {
        self.subscriptions.retain(|s| s.queue != queue);
        self.subscriptions.push(Subscription {
            queue: queue.to_owned(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        });
    }

    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    pub fn has_queue(&self, queue: &str) -> bool {
        self.subscriptions.iter().any(|s| s.queue == queue)
    }

    /// Queues a message with this routing key goes to, each once, in subscription order.
    pub fn route(&self, routing_key: &str) -> Vec<String> {
        self.subscriptions
            .iter()
            .filter(|s| s.patterns.iter().any(|p| topic_matches(p, routing_key)))
            .map(|s| s.queue.clone())
            .collect()
    }
}

impl From<Router> for RouteTable {
    fn from(r: Router) -> RouteTable {
        RouteTable {
            version: "code".to_owned(),
            rules: r
                .subscriptions
                .into_iter()
                .map(|s| Rule::new(&s.queue, s.patterns, vec![s.queue.clone()]))
                .collect(),
        }
    }
}

/// AMQP topic matching: `*` one word, `#` zero or more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&w, rest)) => match k.split_first() {
                Some((&kw, krest)) => (w == "*" || w == kw) && go(rest, krest),
                None => false,
            },
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        let cases = [
            ("#", "petition.received.430102", true),
            ("petition.*.*", "petition.received.430102", true),
            ("petition.#", "petition.received.430102", true),
            ("petition.received.#", "petition.received.430102", true),
            ("petition.received", "petition.received.430102", false),
            ("*.received.*", "workorder.received.430104", true),
            ("workorder.#", "petition.received.430102", false),
            ("petition.#.430102", "petition.received.430102", true),
            ("petition.*", "petition", false),
            ("petition.#", "petition", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }

    #[test]
    fn routes_to_every_matching_queue_once() {
        let mut r = Router::new();
        r.subscribe("trail", &["#"]);
        r.subscribe("warning", &["petition.#", "workorder.#"]);
        r.subscribe("dispatch", &["petition.received.*"]);
        assert_eq!(
            r.route("petition.received.430102"),
            ["trail", "warning", "dispatch"]
        );
        assert_eq!(r.route("workorder.updated.430104"), ["trail", "warning"]);
        r.subscribe("warning", &["workorder.#"]);
        assert_eq!(r.route("petition.updated.430102"), ["trail"]);
        let table = RouteTable::from(r);
        let routing = table.resolve("workorder.updated.430104", None);
        assert_eq!(routing.queues, ["trail", "warning"]);
        assert!(
            routing.routed,
            "subscriptions built in code are not wire taps"
        );
    }
}
