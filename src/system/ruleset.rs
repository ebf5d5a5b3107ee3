// SPDX-License-Identifier: MIT OR Apache-2.0
//! NOTRACK rules that cover a DNATed port. NAT is done by conntrack, so a
//! packet that skips tracking also skips the DNAT: the service behind the
//! published port silently stops answering.
//!
//! The ruleset comes from a [`RulesetSource`]: `nft -j list ruleset` and
//! `iptables-save` on the real host, fixture files under a test root. The
//! parsers take `&str` and never panic; what they cannot read (named sets,
//! negations, jumps into other chains) is left out rather than guessed, so
//! a finding is always a real overlap.

use std::process::Command;

use serde_json::Value;

use crate::sysroot::SysRoot;

pub type PortRange = (u16, u16);

/// One rule of interest, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Where: `nft table ip raw chain PREROUTING handle 4`, or
    /// `iptables-save:12 (*raw -A PREROUTING)`.
    pub at: String,
    /// `udp`, `tcp`, or `None` for any protocol.
    pub protocol: Option<String>,
    /// Destination ports matched; `None` for every port.
    pub ports: Option<Vec<PortRange>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Rules that switch tracking off.
    pub notrack: Vec<RuleRef>,
    /// Rules that DNAT (or redirect) by destination port.
    pub dnat: Vec<RuleRef>,
}

/// A NOTRACK rule that covers ports a DNAT rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub notrack: RuleRef,
    pub dnat: RuleRef,
    /// The shared ports (`None`: all).
    pub ports: Option<Vec<PortRange>>,
    /// The shared protocol (`None`: any).
    pub protocol: Option<String>,
}

/// Where the ruleset text comes from.
#[derive(Debug)]
pub enum RulesetSource {
    /// The real host: runs the tools.
    Commands,
    /// Fixture files under a test root: `ruleset/nft.json` and
    /// `ruleset/iptables-save` (absent file = tool not available).
    Files(SysRoot),
}

impl RulesetSource {
    /// The output of `nft -j list ruleset`, then of `iptables-save`; `None`
    /// for a tool that is not available.
    pub fn outputs(&self) -> [Option<Result<String, String>>; 2] {
        let Self::Files(root) = self else {
            return [
                run_tool("nft", &["-j", "list", "ruleset"]),
                run_tool("iptables-save", &[]),
            ];
        };
        let read = |f| {
            root.read_opt(&format!("ruleset/{f}"))
                .map_err(|e| e.to_string())
        };
        ["nft.json", "iptables-save"].map(|f| read(f).transpose())
    }
}

fn run_tool(cmd: &str, args: &[&str]) -> Option<Result<String, String>> {
    let o = match Command::new(cmd).args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("{cmd}: {e}"))),
        Ok(o) => o,
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Some(match o.status.success() {
        true => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        false => Err(format!("{cmd} {}: {}", args.join(" "), text(&o.stderr))),
    })
}

/// What a rule's matches constrain, as far as understood, and what it does.
#[derive(Default)]
struct Matches {
    protocol: Option<String>,
    ports: Option<Vec<PortRange>>,
    /// Something we cannot evaluate constrains the port (named set,
    /// negation): the rule is left out.
    opaque_port: bool,
    notrack: bool,
    dnat: bool,
}

impl Rules {
    /// File the rule at `at` under NOTRACK, or under DNAT when it names its
    /// ports.
    fn push(&mut self, at: String, m: Matches) {
        if m.opaque_port || !(m.notrack || m.dnat && m.ports.is_some()) {
            return;
        }
        let list = if m.notrack {
            &mut self.notrack
        } else {
            &mut self.dnat
        };
        list.push(RuleRef {
            at,
            protocol: m.protocol,
            ports: m.ports,
        });
    }
}

/// Parse `nft -j list ruleset`.
pub fn parse_nft_json(text: &str) -> Result<Rules, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("nft JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft JSON: no \"nftables\" array")?;
    let mut out = Rules::default();
    for item in items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let Some(exprs) = rule.get("expr").and_then(Value::as_array) else {
            continue;
        };
        let s = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or("?");
        let at = format!(
            "nft table {} {} chain {} handle {}",
            s("family"),
            s("table"),
            s("chain"),
            rule.get("handle").and_then(Value::as_u64).unwrap_or(0)
        );
        let mut m = Matches::default();
        for e in exprs {
            if let Some(mt) = e.get("match") {
                nft_match(mt, &mut m);
            } else if e.get("notrack").is_some() {
                m.notrack = true;
            } else if e.get("dnat").is_some() || e.get("redirect").is_some() {
                m.dnat = true;
            } else if let Some(mg) = e.get("mangle") {
                // `ct state set untracked`-style: the key is ct state and
                // the value untracked.
                let key = mg.pointer("/key/ct/key").and_then(Value::as_str);
                let val = mg.get("value").and_then(Value::as_str);
                m.notrack |= key == Some("state") && val == Some("untracked");
            }
        }
        out.push(at, m);
    }
    Ok(out)
}

fn nft_match(mt: &Value, m: &mut Matches) {
    let op = mt.get("op").and_then(Value::as_str).unwrap_or("==");
    let left = mt.get("left").unwrap_or(&Value::Null);
    let right = mt.get("right").unwrap_or(&Value::Null);
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol").and_then(Value::as_str);
        let field = p.get("field").and_then(Value::as_str);
        if matches!(proto, Some("udp") | Some("tcp")) {
            m.protocol = proto.map(String::from);
        }
        if field == Some("dport") && matches!(proto, Some("udp" | "tcp" | "th")) {
            match (op, nft_ports(right)) {
                ("==" | "in", Some(p)) => m.ports = Some(p),
                _ => m.opaque_port = true,
            }
        }
    } else if left.pointer("/meta/key").and_then(Value::as_str) == Some("l4proto") && op == "==" {
        if let Some(p) = right.as_str().filter(|p| matches!(*p, "udp" | "tcp")) {
            m.protocol = Some(p.to_string());
        }
    }
}

fn nft_ports(v: &Value) -> Option<Vec<PortRange>> {
    let port = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    if let Some(p) = port(v) {
        return Some(vec![(p, p)]);
    }
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        let (a, b) = (port(r.first()?)?, port(r.get(1)?)?);
        return (a <= b).then(|| vec![(a, b)]);
    }
    let set = v.get("set").and_then(Value::as_array)?;
    set.iter()
        .map(nft_ports)
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat())
}

/// Parse `iptables-save` output (the raw and nat tables matter).
pub fn parse_iptables_save(text: &str) -> Rules {
    let mut out = Rules::default();
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut toks = rest.split_whitespace();
        let chain = toks.next().unwrap_or("?");
        let (mut m, mut negate) = (Matches::default(), false);
        while let Some(t) = toks.next() {
            let negated = std::mem::take(&mut negate);
            match t {
                "!" => negate = true,
                "-p" | "--protocol" => {
                    let p = toks
                        .next()
                        .filter(|p| !negated && matches!(*p, "udp" | "tcp"));
                    m.protocol = p.map(String::from).or(m.protocol.take());
                }
                "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                    match toks.next().and_then(ipt_ports) {
                        Some(p) if !negated => m.ports = Some(p),
                        _ => m.opaque_port = true,
                    }
                }
                "-j" | "--jump" => {
                    let target = toks.next();
                    m.notrack |= target == Some("NOTRACK");
                    m.dnat |= matches!(target, Some("DNAT" | "REDIRECT"));
                }
                "--notrack" => m.notrack = true,
                _ => {}
            }
        }
        out.push(format!("iptables-save:{} (*{table} -A {chain})", i + 1), m);
    }
    out
}

/// `53`, `1000:2000`, `53,1000:2000` (multiport).
fn ipt_ports(s: &str) -> Option<Vec<PortRange>> {
    s.split(',')
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap_or((p, p));
            let port = |s: &str, empty| s.parse().ok().or(s.is_empty().then_some(empty));
            let (a, b) = (port(a, 0)?, port(b, u16::MAX)?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// Every NOTRACK rule that overlaps a DNAT rule in protocol and port.
pub fn conflicts(rules: &Rules) -> Vec<Conflict> {
    let mut out = Vec::new();
    for n in &rules.notrack {
        for d in &rules.dnat {
            if matches!((&n.protocol, &d.protocol), (Some(a), Some(b)) if a != b) {
                continue;
            }
            let protocol = n.protocol.clone().or_else(|| d.protocol.clone());
            let ports = match (&n.ports, &d.ports) {
                (Some(a), Some(b)) => match intersect(a, b) {
                    shared if shared.is_empty() => continue,
                    shared => Some(shared),
                },
                (a, b) => a.clone().or_else(|| b.clone()),
            };
            let (notrack, dnat) = (n.clone(), d.clone());
            out.push(Conflict {
                notrack,
                dnat,
                ports,
                protocol,
            });
        }
    }
    out
}

fn intersect(a: &[PortRange], b: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            if lo <= hi && !out.contains(&(lo, hi)) {
                out.push((lo, hi));
            }
        }
    }
    out
}

/// `6969`, `1000-2000`, joined with commas; `all ports` for `None`.
pub fn fmt_ports(p: &Option<Vec<PortRange>>) -> String {
    let Some(v) = p else {
        return "all ports".into();
    };
    let one = |&(a, b): &PortRange| match a == b {
        true => a.to_string(),
        false => format!("{a}-{b}"),
    };
    v.iter().map(one).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NFT: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "raw", "handle": 1}},
      {"rule": {"family": "ip", "table": "raw", "chain": "PREROUTING", "handle": 4,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                  "right": {"set": [53, {"range": [6960, 6970]}]}}}, {"notrack": null}]}},
      {"rule": {"family": "ip", "table": "nat", "chain": "prerouting", "handle": 7,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 6969}},
                 {"dnat": {"addr": "198.18.1.2", "port": 6969}}]}},
      {"rule": {"family": "ip", "table": "nat", "chain": "prerouting", "handle": 8,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 53}},
                 {"dnat": {"addr": "198.18.1.3"}}]}},
      {"rule": {"family": "ip", "table": "nat", "chain": "prerouting", "handle": 9,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": "@ports"}},
                 {"dnat": {"addr": "198.18.1.4"}}]}}
    ]}"#;

    #[test]
    fn nft_conflict() {
        let r = parse_nft_json(NFT).unwrap();
        assert_eq!(r.notrack.len(), 1);
        assert_eq!(r.dnat.len(), 2);
        let c = conflicts(&r);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].ports, Some(vec![(6969, 6969)]));
        assert_eq!(
            c[0].notrack.at,
            "nft table ip raw chain PREROUTING handle 4"
        );
        assert!(parse_nft_json("{}").is_err());
        assert!(parse_nft_json("not json").is_err());
    }

    #[test]
    fn iptables_conflict() {
        let t = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -m udp --dport 6000:7000 -j CT --notrack\n-A PREROUTING -p udp ! --dport 53 -j NOTRACK\nCOMMIT\n*nat\n-A DOCKER ! -i docker0 -p udp -m udp --dport 6969 -j DNAT --to-destination 172.17.0.2:6969\n-A DOCKER -p tcp -m multiport --dports 80,443 -j DNAT --to-destination 172.17.0.3\nCOMMIT\n";
        let r = parse_iptables_save(t);
        assert_eq!(r.notrack.len(), 1);
        assert_eq!(r.dnat.len(), 2);
        let c = conflicts(&r);
        assert_eq!(c.len(), 1);
        assert_eq!(fmt_ports(&c[0].ports), "6969");
        assert_eq!(c[0].dnat.at, "iptables-save:7 (*nat -A DOCKER)");
    }

    #[test]
    fn unrelated_ports_do_not_conflict() {
        let t = "*raw\n-A PREROUTING -p udp --dport 123 -j NOTRACK\n*nat\n-A DOCKER -p udp --dport 6969 -j DNAT --to-destination 1.2.3.4\n-A DOCKER -p tcp --dport 123 -j DNAT --to-destination 1.2.3.4\n";
        assert!(conflicts(&parse_iptables_save(t)).is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_nft_json(&s);
            let r = parse_iptables_save(&s);
            let _ = conflicts(&r);
            let _ = ipt_ports(&s);
        }

        #[test]
        fn iptables_like_never_panics(lines in proptest::collection::vec("(\\*nat|-A X|-p|udp|!|--dport|[0-9:,]{0,8}|-j|DNAT|NOTRACK|--notrack| )*", 0..8)) {
            let r = parse_iptables_save(&lines.join("\n"));
            let _ = conflicts(&r);
        }

        #[test]
        fn nft_shaped_never_panics(port in any::<i64>(), a in any::<i64>(), b in any::<i64>()) {
            let t = format!(r#"{{"nftables":[{{"rule":{{"expr":[{{"match":{{"left":{{"payload":{{"protocol":"udp","field":"dport"}}}},"right":{{"set":[{port},{{"range":[{a},{b}]}}]}}}}}},{{"notrack":null}}]}}}}]}}"#);
            let _ = parse_nft_json(&t);
        }
    }
}
