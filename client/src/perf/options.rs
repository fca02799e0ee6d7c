//! `warren-cli perf` options, and the [`Plan`] they resolve to: which queues and exchange to
//! declare, where each producer publishes, which queue each consumer reads, and which
//! connection each of them uses. Pure: no I/O, so the resolution is unit-tested.

use crate::error::Error;
use std::time::Duration;

/// Options of `warren-cli perf`, a load generator in the spirit of RabbitMQ's PerfTest.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    warren-cli perf --producers 1 --consumers 1 --duration 30\n  \
    warren-cli perf --persistent --durable --confirm 1000 --queue bench --json\n  \
    warren-cli perf --fanout 10 --consumers 10 --size 1024\n  \
    warren-cli perf --queues 100 --producers 100 --consumers 100 --connections 10\n\n\
    Latency is end to end: producers put a timestamp in the first 8 bytes of each body \
    and consumers in the same process read it, so --size must be at least 8 for it.")]
pub struct PerfOptions {
    /// Publishing tasks, each on its own channel.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub producers: usize,
    /// Consuming tasks, each on its own channel.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consumers: usize,
    /// The queue to publish to and consume from [default: perf].
    #[arg(long, value_name = "NAME", conflicts_with_all = ["queues", "fanout"])]
    pub queue: Option<String>,
    /// Use N queues named by --queue-pattern; producers and consumers are spread over them
    /// round-robin.
    #[arg(long, value_name = "N", conflicts_with = "fanout")]
    pub queues: Option<usize>,
    /// Names of the queues of --queues and --fanout; %d becomes 1, 2, …
    #[arg(long, default_value = "perf-%d", value_name = "PATTERN")]
    pub queue_pattern: String,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,
    /// Messages per second per producer (0: as fast as possible).
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    pub rate: u64,
    /// Publisher confirms: at most N unconfirmed messages per producer (0: no confirms).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub confirm: usize,
    /// Publish persistent messages (delivery_mode 2).
    #[arg(long)]
    pub persistent: bool,
    /// Declare the queues (and exchange) durable.
    #[arg(long)]
    pub durable: bool,
    /// Unacknowledged deliveries allowed per consumer (basic.qos; 0: unlimited).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub prefetch: u16,
    /// Consume without acknowledgements (no_ack).
    #[arg(long)]
    pub autoack: bool,
    /// Ack with `multiple` every N deliveries (and whenever no further delivery is waiting);
    /// 1 acks each delivery on its own.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        conflicts_with = "autoack"
    )]
    pub multi_ack_every: u32,
    /// Publish through this exchange: a direct exchange with each queue bound under its
    /// own name, or with --fanout a fanout exchange [default: the default exchange;
    /// perf-fanout with --fanout].
    #[arg(long, value_name = "NAME")]
    pub exchange: Option<String>,
    /// Fan out: bind Q queues (named by --queue-pattern) to a fanout exchange that every
    /// producer publishes to; consumers are spread over the Q queues.
    #[arg(long, value_name = "Q")]
    pub fanout: Option<usize>,
    /// Run for this many seconds, then stop and print the summary (0: until Ctrl-C).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub duration: u64,
    /// Spread producers and consumers over N connections (0: one connection each).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub connections: usize,
    /// Print the final summary as JSON on stdout (progress lines stay on stderr).
    #[arg(long)]
    pub json: bool,
    /// Delete the queues (and exchange) when the run ends.
    #[arg(long)]
    pub delete_queues: bool,
    /// Also measure the CPU time of this broker process (Linux, same machine) and compare
    /// it with the load generator's.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}

/// The exchange a run declares and publishes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangePlan {
    pub name: String,
    pub fanout: bool,
}

/// Where a producer's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub exchange: String,
    pub routing_key: String,
}

/// What a run does, resolved from [`PerfOptions`] and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub options: PerfOptions,
    /// `None`: publish through the default exchange by queue name.
    pub exchange: Option<ExchangePlan>,
    pub queues: Vec<String>,
    pub connections: usize,
    /// `None`: run until interrupted.
    pub duration: Option<Duration>,
}

const DEFAULT_QUEUE: &str = "perf";
const DEFAULT_FANOUT_EXCHANGE: &str = "perf-fanout";

impl PerfOptions {
    /// Checks the options and resolves the topology.
    pub fn plan(&self) -> Result<Plan, Error> {
        let usage = |text: &str| Err(Error::Usage(text.to_string()));
        if self.producers == 0 && self.consumers == 0 {
            return usage("nothing to do: --producers and --consumers are both 0");
        }
        let queues = match (self.fanout, self.queues, &self.queue) {
            (Some(0), _, _) => return usage("--fanout needs at least 1 queue"),
            (_, Some(0), _) => return usage("--queues must be at least 1"),
            (Some(n), _, _) | (None, Some(n), _) => self.pattern_names(n)?,
            (None, None, Some(name)) if name.is_empty() => {
                return usage("--queue needs a name (server-named queues are not supported)")
            }
            (None, None, Some(name)) => vec![name.clone()],
            (None, None, None) => vec![DEFAULT_QUEUE.to_string()],
        };
        let exchange = match (&self.exchange, self.fanout) {
            (Some(name), Some(_)) if name.is_empty() => {
                return usage("the default exchange cannot fan out; name one with --exchange")
            }
            (Some(name), _) if name.is_empty() => None,
            (Some(name), fanout) => Some(ExchangePlan {
                name: name.clone(),
                fanout: fanout.is_some(),
            }),
            (None, Some(_)) => Some(ExchangePlan {
                name: DEFAULT_FANOUT_EXCHANGE.to_string(),
                fanout: true,
            }),
            (None, None) => None,
        };
        let actors = self.producers + self.consumers;
        let connections = match self.connections {
            0 => actors,
            n => n.min(actors),
        };
        Ok(Plan {
            options: self.clone(),
            exchange,
            queues,
            connections,
            duration: (self.duration > 0).then(|| Duration::from_secs(self.duration)),
        })
    }

    fn pattern_names(&self, n: usize) -> Result<Vec<String>, Error> {
        if n > 1 && !self.queue_pattern.contains("%d") {
            return Err(Error::Usage(format!(
                "--queue-pattern '{}' must contain %d to name {n} queues",
                self.queue_pattern
            )));
        }
        Ok((1..=n)
            .map(|i| self.queue_pattern.replace("%d", &i.to_string()))
            .collect())
    }
}

impl Plan {
    /// Where producer `index` publishes.
    pub fn producer_route(&self, index: usize) -> Route {
        let queue = &self.queues[index % self.queues.len()];
        match &self.exchange {
            None => Route {
                exchange: String::new(),
                routing_key: queue.clone(),
            },
            Some(ExchangePlan { name, fanout: true }) => Route {
                exchange: name.clone(),
                routing_key: String::new(),
            },
            Some(ExchangePlan {
                name,
                fanout: false,
            }) => Route {
                exchange: name.clone(),
                routing_key: queue.clone(),
            },
        }
    }

    /// The queue consumer `index` reads.
    pub fn consumer_queue(&self, index: usize) -> &str {
        &self.queues[index % self.queues.len()]
    }

    /// The connection consumer `index` uses: consumers come first, then producers, dealt
    /// round-robin over the connections.
    pub fn consumer_connection(&self, index: usize) -> usize {
        index % self.connections
    }

    /// The connection producer `index` uses.
    pub fn producer_connection(&self, index: usize) -> usize {
        (self.options.consumers + index) % self.connections
    }

    /// A one-line description of the scenario, for the summary.
    pub fn describe(&self) -> String {
        let o = &self.options;
        let mut parts = vec![
            format!("{} producer(s)", o.producers),
            format!("{} consumer(s)", o.consumers),
            format!("{} queue(s)", self.queues.len()),
            format!("{}-byte bodies", o.size),
        ];
        if let Some(ExchangePlan { name, fanout }) = &self.exchange {
            let kind = if *fanout { "fanout" } else { "direct" };
            parts.push(format!("{kind} exchange '{name}'"));
        }
        if o.persistent {
            parts.push("persistent".into());
        }
        if o.durable {
            parts.push("durable queues".into());
        }
        if o.confirm > 0 {
            parts.push(format!("confirms (≤{} outstanding)", o.confirm));
        }
        if o.consumers > 0 {
            parts.push(if o.autoack {
                "auto-ack".to_string()
            } else {
                match o.multi_ack_every {
                    0 | 1 => format!("manual acks, prefetch {}", o.prefetch),
                    n => format!("acks every {n} (multiple), prefetch {}", o.prefetch),
                }
            });
        }
        if o.rate > 0 {
            parts.push(format!("{} msg/s per producer", o.rate));
        }
        parts.push(format!("{} connection(s)", self.connections));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        perf: PerfOptions,
    }

    fn parse(args: &[&str]) -> Result<PerfOptions, clap::Error> {
        let argv = std::iter::once("perf").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.perf)
    }

    fn plan(args: &[&str]) -> Plan {
        parse(args).unwrap().plan().unwrap()
    }

    #[test]
    fn defaults_are_one_producer_and_one_consumer_on_queue_perf() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.producers, o.consumers, o.size, o.rate), (1, 1, 16, 0));
        assert_eq!((o.confirm, o.prefetch, o.duration), (0, 1000, 10));
        assert!(!o.persistent && !o.durable && !o.autoack && !o.json);
        assert_eq!(o.multi_ack_every, 1);
        let p = o.plan().unwrap();
        assert_eq!(p.queues, ["perf"]);
        assert_eq!(p.exchange, None);
        assert_eq!(p.connections, 2);
        assert_eq!(p.duration, Some(Duration::from_secs(10)));
        assert_eq!(
            p.producer_route(0),
            Route {
                exchange: "".into(),
                routing_key: "perf".into()
            }
        );
    }

    #[test]
    fn persistent_confirm_scenario_parses() {
        let p = plan(&[
            "--producers",
            "4",
            "--confirm",
            "100",
            "--persistent",
            "--durable",
            "--queue",
            "bench",
            "--size",
            "1024",
            "--duration",
            "0",
            "--json",
        ]);
        let o = &p.options;
        assert_eq!((o.producers, o.confirm, o.size), (4, 100, 1024));
        assert!(o.persistent && o.durable && o.json);
        assert_eq!(p.queues, ["bench"]);
        assert_eq!(p.duration, None);
        assert_eq!(p.producer_route(3).routing_key, "bench");
    }

    #[test]
    fn queues_follow_the_pattern_and_are_dealt_round_robin() {
        let p = plan(&["--queues", "3", "--producers", "4", "--consumers", "5"]);
        assert_eq!(p.queues, ["perf-1", "perf-2", "perf-3"]);
        assert_eq!(p.producer_route(3).routing_key, "perf-1");
        assert_eq!(p.consumer_queue(4), "perf-2");
    }

    #[test]
    fn fanout_binds_q_queues_to_one_exchange() {
        let p = plan(&["--fanout", "10", "--consumers", "10"]);
        assert_eq!(p.queues.len(), 10);
        assert_eq!(p.queues[9], "perf-10");
        assert_eq!(
            p.exchange,
            Some(ExchangePlan {
                name: "perf-fanout".into(),
                fanout: true
            })
        );
        assert_eq!(
            p.producer_route(0),
            Route {
                exchange: "perf-fanout".into(),
                routing_key: "".into()
            }
        );
        let named = plan(&["--fanout", "2", "--exchange", "fx"]);
        assert_eq!(named.producer_route(0).exchange, "fx");
    }

    #[test]
    fn a_named_exchange_without_fanout_routes_by_queue_name() {
        let p = plan(&["--exchange", "dx", "--queues", "2", "--producers", "2"]);
        assert_eq!(
            p.producer_route(1),
            Route {
                exchange: "dx".into(),
                routing_key: "perf-2".into()
            }
        );
    }

    #[test]
    fn connections_are_shared_round_robin_consumers_first() {
        let p = plan(&["--producers", "3", "--consumers", "2", "--connections", "2"]);
        assert_eq!(p.connections, 2);
        assert_eq!(
            (0..2).map(|i| p.consumer_connection(i)).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            (0..3).map(|i| p.producer_connection(i)).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        // More connections than producers and consumers: one each, no idle connections.
        assert_eq!(plan(&["--connections", "50"]).connections, 2);
    }

    #[test]
    fn contradictory_or_empty_options_are_refused() {
        assert!(parse(&["--queue", "a", "--queues", "2"]).is_err());
        assert!(parse(&["--queue", "a", "--fanout", "2"]).is_err());
        assert!(parse(&["--producers", "-1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--autoack", "--multi-ack-every", "10"]).is_err());
        let refused = |args: &[&str]| parse(args).unwrap().plan().unwrap_err().to_string();
        assert!(refused(&["--producers", "0", "--consumers", "0"]).contains("nothing to do"));
        assert!(refused(&["--queues", "0"]).contains("at least 1"));
        assert!(refused(&["--queues", "2", "--queue-pattern", "q"]).contains("%d"));
        assert!(refused(&["--queue", ""]).contains("needs a name"));
        assert!(refused(&["--fanout", "2", "--exchange", ""]).contains("cannot fan out"));
    }
}
