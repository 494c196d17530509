//! The internal side's DNS, generated from the partner list: records that send the internal XMPP
//! servers' s2s traffic for partner domains to fedgate's internal listener.
//!
//! [`render`] is a pure function over the partners' domain patterns, the address internal servers
//! must connect to and the output format. It lives in the model (not in `fedgate-manage`) because
//! the gateway runtime, which does not call the management crate, keeps such a file in step with
//! the partner list (`fedgate_gateway::internal_dns`).
//!
//! For every exact domain `d` the resolver formats give:
//! - `d` A or AAAA → the target address (the resolver then answers no other address type for `d`);
//! - `_xmpp-server._tcp.d` SRV → `d.` on the target port;
//! - `_xmpps-server._tcp.d` SRV → `.` ("no such service", RFC 2782), so a server that tries
//!   Direct TLS (XEP-0368) first never learns the partner's real host from outside DNS.
//!
//! A wildcard `*.d` (every strict subdomain of `d`, as [`DomainPattern`] means it) gets address
//! records only: no resolver format can give each subdomain an SRV record naming itself, so
//! servers fall back to the subdomain's address on port 5269 (each format's output says so when
//! the listener is on another port).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::choice::Choice;
use crate::domain::{Domain, DomainPattern};
use crate::error::InvalidValue;
use crate::partner::DEFAULT_S2S_PORT;

/// The file formats `fedgate internal-dns --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InternalDnsFormat {
    /// dnsmasq configuration lines (`address=` + `local=`, `srv-host=`).
    Dnsmasq,
    /// unbound `server:` clause (`local-data:`, `local-zone: … redirect`).
    Unbound,
    /// A BIND response-policy zone (RPZ) file.
    Bind,
    /// hosts(5) lines: address records only.
    Hosts,
    /// A hosts file for Prosody's own resolver (libunbound's `hoststxt`), which also hides the
    /// partners' SRV records.
    Prosody,
}

impl Choice for InternalDnsFormat {
    const ALL: &'static [Self] = &[
        InternalDnsFormat::Dnsmasq,
        InternalDnsFormat::Unbound,
        InternalDnsFormat::Bind,
        InternalDnsFormat::Hosts,
        InternalDnsFormat::Prosody,
    ];
    const TYPE_NAME: &'static str = "InternalDnsFormat";
    fn name(self) -> &'static str {
        match self {
            InternalDnsFormat::Dnsmasq => "dnsmasq",
            InternalDnsFormat::Unbound => "unbound",
            InternalDnsFormat::Bind => "bind",
            InternalDnsFormat::Hosts => "hosts",
            InternalDnsFormat::Prosody => "prosody",
        }
    }
}

impl std::fmt::Display for InternalDnsFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The records, in `format`, that send every domain of `patterns` to `target` (the internal
/// listener's address as the internal servers reach it). Duplicates are dropped and the output is
/// sorted, so the same partner list always gives the same text.
pub fn render(format: InternalDnsFormat, patterns: &[DomainPattern], target: SocketAddr) -> String {
    let mut exact = BTreeSet::new();
    let mut wildcards = BTreeSet::new();
    for p in patterns {
        match p {
            DomainPattern::Exact(d) => exact.insert(d.clone()),
            DomainPattern::Wildcard(d) => wildcards.insert(d.clone()),
        };
    }
    let set = Records {
        exact,
        wildcards,
        target,
    };
    match format {
        InternalDnsFormat::Dnsmasq => set.dnsmasq(),
        InternalDnsFormat::Unbound => set.unbound(),
        InternalDnsFormat::Bind => set.bind(),
        InternalDnsFormat::Hosts => set.hosts(),
        InternalDnsFormat::Prosody => set.prosody(),
    }
}

/// The address internal servers must connect to: `--address` (`ip` or `ip:port`, `[v6]:port`;
/// without a port, the listener's) or else the internal listener's own address, which must then be
/// a specific one (not 0.0.0.0 or ::, which no server can connect to, nor port 0).
pub fn target(listen: SocketAddr, address: Option<&str>) -> Result<SocketAddr, InvalidValue> {
    let Some(text) = address.map(str::trim) else {
        if listen.ip().is_unspecified() || listen.port() == 0 {
            return Err(InvalidValue::new(
                "--address",
                format!(
                    "internal_listener.listen is {listen}, which internal servers cannot connect to: give the address they must use, as --address 192.0.2.10 or --address 192.0.2.10:5269."
                ),
            ));
        }
        return Ok(listen);
    };
    let parsed = text
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            let bare = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(text);
            bare.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, listen.port()))
        })
        .ok_or_else(|| {
            InvalidValue::new(
                "--address",
                format!("'{text}' is not an IP address with an optional port; expected 192.0.2.10, 192.0.2.10:5269 or [2001:db8::10]:5269."),
            )
        })?;
    if parsed.ip().is_unspecified() || parsed.port() == 0 {
        return Err(InvalidValue::new(
            "--address",
            format!(
                "'{text}' is not an address a server can connect to (unspecified address or port 0)."
            ),
        ));
    }
    Ok(parsed)
}

struct Records {
    exact: BTreeSet<Domain>,
    wildcards: BTreeSet<Domain>,
    target: SocketAddr,
}

impl Records {
    fn ip(&self) -> IpAddr {
        self.target.ip()
    }

    fn port(&self) -> u16 {
        self.target.port()
    }

    fn address_type(&self) -> &'static str {
        if self.ip().is_ipv4() { "A" } else { "AAAA" }
    }

    /// The first lines of every format: what this is and where it points.
    fn header(&self, comment: &str, format: InternalDnsFormat) -> String {
        let mut out = format!(
            "{comment} Generated by `fedgate internal-dns --format {format}`: partner domains -> fedgate's internal listener {}.\n",
            self.target
        );
        let _ = writeln!(
            out,
            "{comment} {} exact domain(s), {} wildcard(s). Regenerate whenever the partner list changes.",
            self.exact.len(),
            self.wildcards.len()
        );
        out
    }

    /// The note for a wildcard in formats that give it address records only.
    fn wildcard_port_note(&self, comment: &str) -> Option<String> {
        (self.port() != DEFAULT_S2S_PORT).then(|| {
            format!(
                "{comment} WARNING: no SRV record for these subdomains: servers connect to port {DEFAULT_S2S_PORT}, but the listener is on {}; make it listen on {DEFAULT_S2S_PORT} or list the subdomains you need as exact AdditionalDomains.\n",
                self.port()
            )
        })
    }

    fn dnsmasq(&self) -> String {
        let mut out = self.header("#", InternalDnsFormat::Dnsmasq);
        out.push_str("# Use: conf-file=<this file> in dnsmasq.conf (or put it in /etc/dnsmasq.d/), then restart dnsmasq (SIGHUP does not re-read it).\n");
        let (ip, port) = (self.ip(), self.port());
        if !self.exact.is_empty() {
            // host-record= would let every other type (AAAA among them) be asked outside, and
            // address=/d/ alone covers the subdomains: local= keeps d's other types here, and
            // server=/*.d/# gives d's subdomains back to the normal upstream servers.
            out.push_str("# Exact domains: address= and local= answer the domain itself (its other record types empty, never asked outside);
# server=/*.domain/# leaves its subdomains to your normal upstream servers.
");
        }
        for d in &self.exact {
            let _ = writeln!(out, "address=/{d}/{ip}");
            let _ = writeln!(out, "local=/{d}/");
            if !self.wildcards.contains(d) {
                let _ = writeln!(out, "server=/*.{d}/#");
            }
            let _ = writeln!(out, "srv-host=_xmpp-server._tcp.{d},{d},{port}");
            let _ = writeln!(out, "srv-host=_xmpps-server._tcp.{d}");
        }
        for d in &self.wildcards {
            let _ = writeln!(
                out,
                "# *.{d}: every subdomain, not {d} itself (as fedgate means it); SRV and other types answered here (empty), never from outside."
            );
            if let Some(note) = self.wildcard_port_note("#") {
                out.push_str(&note);
            }
            let _ = writeln!(out, "address=/*.{d}/{ip}");
            let _ = writeln!(out, "local=/*.{d}/");
        }
        out
    }

    fn unbound(&self) -> String {
        let mut out = self.header("#", InternalDnsFormat::Unbound);
        out.push_str(
            "# Use: include: <this file> in unbound.conf, then `unbound-control reload`.\n",
        );
        out.push_str("server:\n");
        let (ip, port, rr) = (self.ip(), self.port(), self.address_type());
        for d in &self.exact {
            if let Some(parent) = self.covering_wildcard(d) {
                // A redirect zone allows no local data below its apex, but a more specific zone
                // inside it wins: each SRV owner gets a static zone of its own.
                let _ = writeln!(
                    out,
                    "    # {d}: inside the redirect zone of *.{parent} below, which answers its address; its SRV records in zones of their own."
                );
                let _ = writeln!(out, "    local-zone: \"_xmpp-server._tcp.{d}.\" static");
                let _ = writeln!(
                    out,
                    "    local-data: \"_xmpp-server._tcp.{d}. SRV 0 0 {port} {d}.\""
                );
                let _ = writeln!(out, "    local-zone: \"_xmpps-server._tcp.{d}.\" static");
                let _ = writeln!(
                    out,
                    "    local-data: \"_xmpps-server._tcp.{d}. SRV 0 0 0 .\""
                );
                continue;
            }
            let _ = writeln!(out, "    local-data: \"{d}. {rr} {ip}\"");
            let _ = writeln!(
                out,
                "    local-data: \"_xmpp-server._tcp.{d}. SRV 0 0 {port} {d}.\""
            );
            let _ = writeln!(
                out,
                "    local-data: \"_xmpps-server._tcp.{d}. SRV 0 0 0 .\""
            );
        }
        for d in &self.wildcards {
            let _ = writeln!(
                out,
                "    # *.{d}: every subdomain (a redirect zone also answers {d} itself, which fedgate refuses unless it is a partner domain too); SRV queries get an empty answer."
            );
            if let Some(note) = self.wildcard_port_note("    #") {
                out.push_str(&note);
            }
            let _ = writeln!(out, "    local-zone: \"{d}.\" redirect");
            let _ = writeln!(out, "    local-data: \"{d}. {rr} {ip}\"");
        }
        out
    }

    /// A wildcard whose unbound redirect zone contains `d` (`d` is its parent or below it).
    fn covering_wildcard(&self, d: &Domain) -> Option<&Domain> {
        self.wildcards
            .iter()
            .find(|w| *w == d || d.is_strict_subdomain_of(w))
    }

    fn bind(&self) -> String {
        let mut out = self.header(";", InternalDnsFormat::Bind);
        out.push_str(
            "; A response-policy zone (RPZ). Save as /etc/bind/fedgate-partners.rpz and in named.conf:\n\
             ;   options { response-policy { zone \"fedgate-partners\"; } qname-wait-recurse no min-update-interval 0; };\n\
             ; (qname-wait-recurse no: named answers partner names from this zone without first resolving them outside, so\n\
             ; they never leave and an outside DNS that fails does not make them SERVFAIL; min-update-interval 0: a reload\n\
             ; applies a partner change at once, not up to 60 s later.)\n\
             ;   zone \"fedgate-partners\" { type primary; file \"/etc/bind/fedgate-partners.rpz\"; allow-query { none; }; };\n\
             ; then `rndc reload fedgate-partners`. Owner names are relative to the policy zone: \"contoso.com\" rewrites contoso.com.\n\
             $TTL 60\n\
             @ IN SOA localhost. root.localhost. 1 3600 600 86400 60\n\
             @ IN NS localhost.\n",
        );
        let (ip, port, rr) = (self.ip(), self.port(), self.address_type());
        for d in &self.exact {
            let _ = writeln!(out, "{d} IN {rr} {ip}");
            let _ = writeln!(out, "_xmpp-server._tcp.{d} IN SRV 0 0 {port} {d}.");
            let _ = writeln!(out, "_xmpps-server._tcp.{d} IN SRV 0 0 0 .");
        }
        for d in &self.wildcards {
            let _ = writeln!(
                out,
                "; *.{d}: every subdomain, not {d} itself (as fedgate means it); SRV queries get an empty answer."
            );
            if let Some(note) = self.wildcard_port_note(";") {
                out.push_str(&note);
            }
            let _ = writeln!(out, "*.{d} IN {rr} {ip}");
        }
        out
    }

    fn hosts(&self) -> String {
        let mut out = self.header("#", InternalDnsFormat::Hosts);
        out.push_str("# Address records only: a resolver reading this file still asks outside DNS for SRV records, and a partner's\n# published _xmpp-server SRV record then sends the internal server past the gateway. Prefer a resolver format.\n");
        if self.port() != DEFAULT_S2S_PORT {
            let _ = writeln!(
                out,
                "# WARNING: without SRV records servers connect to port {DEFAULT_S2S_PORT}, but the listener is on {}; make it listen on {DEFAULT_S2S_PORT} or use a resolver format.",
                self.port()
            );
        }
        self.hosts_lines(&mut out, false);
        out
    }

    /// One hosts(5) line per exact domain (with `srv_owners`, also naming its SRV owners, so that
    /// libunbound answers them empty instead of asking outside); a note per wildcard.
    fn hosts_lines(&self, out: &mut String, srv_owners: bool) {
        let ip = self.ip();
        for d in &self.exact {
            if srv_owners {
                let _ = writeln!(out, "{ip} {d} _xmpp-server._tcp.{d} _xmpps-server._tcp.{d}");
            } else {
                let _ = writeln!(out, "{ip} {d}");
            }
        }
        for d in &self.wildcards {
            let _ = writeln!(
                out,
                "# *.{d}: a hosts file cannot say \"every subdomain\"; list the subdomains you need as exact AdditionalDomains, or use a resolver format (a local resolver for Prosody)."
            );
        }
    }

    fn prosody(&self) -> String {
        let mut out = self.header("#", InternalDnsFormat::Prosody);
        out.push_str(
            "# For Prosody's own resolver (libunbound). Save as /etc/prosody/fedgate-partners.hosts and set in prosody.cfg.lua:\n\
             #   unbound = { hoststxt = \"/etc/prosody/fedgate-partners.hosts\" }\n\
             # then restart Prosody. libunbound answers every name below from this file: the address for A/AAAA, and an empty answer\n\
             # for SRV, so Prosody never sees a partner's real SRV record and connects to the domain's address on port 5269.\n\
             # (Prosody 0.12 with lua-unbound 1.0 takes one string per unbound option: a Lua table of local-data lines crashes it,\n\
             # hence this hosts file.) Prosody then no longer reads /etc/hosts.\n",
        );
        if self.port() != DEFAULT_S2S_PORT {
            let _ = writeln!(
                out,
                "# WARNING: Prosody connects to port {DEFAULT_S2S_PORT}, but the listener is on {}: make it listen on {DEFAULT_S2S_PORT}, or run a local resolver\n# (--format dnsmasq) and set unbound = {{ resolvconf = \"/etc/prosody/resolv.conf\" }} naming it.",
                self.port()
            );
        }
        self.hosts_lines(&mut out, true);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Vec<DomainPattern> {
        texts
            .iter()
            .map(|t| DomainPattern::parse(t).unwrap())
            .collect()
    }

    fn target(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The lines that are not comments (what the resolver acts on).
    fn records(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .collect()
    }

    fn comments<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(marker))
            .collect()
    }

    #[test]
    fn format_names_parse_case_insensitively_and_list_the_allowed_values() {
        assert_eq!(
            InternalDnsFormat::parse_name("DNSMasq"),
            Some(InternalDnsFormat::Dnsmasq)
        );
        assert_eq!(InternalDnsFormat::parse_name("bind9"), None);
        assert_eq!(
            InternalDnsFormat::allowed_names(),
            "dnsmasq, unbound, bind, hosts, prosody"
        );
    }

    #[test]
    fn dnsmasq_answers_exact_names_alone_and_wildcards_for_subdomains_only() {
        let out = render(
            InternalDnsFormat::Dnsmasq,
            &patterns(&["contoso.com", "*.fabrikam.com", "fabrikam.com"]),
            target("192.0.2.10:5270"),
        );
        assert_eq!(
            records(&out),
            [
                "address=/contoso.com/192.0.2.10",
                "local=/contoso.com/",
                // contoso.com's subdomains are not partners: back to the normal servers.
                "server=/*.contoso.com/#",
                "srv-host=_xmpp-server._tcp.contoso.com,contoso.com,5270",
                "srv-host=_xmpps-server._tcp.contoso.com",
                // fabrikam.com is exact and *.fabrikam.com a wildcard: no hand-back.
                "address=/fabrikam.com/192.0.2.10",
                "local=/fabrikam.com/",
                "srv-host=_xmpp-server._tcp.fabrikam.com,fabrikam.com,5270",
                "srv-host=_xmpps-server._tcp.fabrikam.com",
                "address=/*.fabrikam.com/192.0.2.10",
                "local=/*.fabrikam.com/",
            ]
        );
        assert!(
            out.contains("servers connect to port 5269, but the listener is on 5270"),
            "{out}"
        );
    }

    #[test]
    fn unbound_gives_local_data_and_a_redirect_zone_per_wildcard() {
        let out = render(
            InternalDnsFormat::Unbound,
            &patterns(&["contoso.com", "*.fabrikam.com", "a.fabrikam.com"]),
            target("[2001:db8::10]:5269"),
        );
        assert_eq!(
            records(&out),
            [
                "server:",
                // a.fabrikam.com lies inside the redirect zone (which answers its address, and
                // allows no local data below its apex): its SRV owners get static zones.
                "local-zone: \"_xmpp-server._tcp.a.fabrikam.com.\" static",
                "local-data: \"_xmpp-server._tcp.a.fabrikam.com. SRV 0 0 5269 a.fabrikam.com.\"",
                "local-zone: \"_xmpps-server._tcp.a.fabrikam.com.\" static",
                "local-data: \"_xmpps-server._tcp.a.fabrikam.com. SRV 0 0 0 .\"",
                "local-data: \"contoso.com. AAAA 2001:db8::10\"",
                "local-data: \"_xmpp-server._tcp.contoso.com. SRV 0 0 5269 contoso.com.\"",
                "local-data: \"_xmpps-server._tcp.contoso.com. SRV 0 0 0 .\"",
                "local-zone: \"fabrikam.com.\" redirect",
                "local-data: \"fabrikam.com. AAAA 2001:db8::10\"",
            ]
        );
        assert!(out.contains("# a.fabrikam.com: inside the redirect zone of *.fabrikam.com"));
        // Port 5269: no warning.
        assert!(!out.contains("WARNING"), "{out}");
    }

    #[test]
    fn bind_is_an_rpz_zone_whose_wildcard_owner_excludes_the_parent() {
        let out = render(
            InternalDnsFormat::Bind,
            &patterns(&["contoso.com", "*.fabrikam.com"]),
            target("192.0.2.10:5269"),
        );
        let recs = records(&out);
        assert_eq!(recs[0], "$TTL 60");
        assert!(recs[1].starts_with("@ IN SOA "));
        assert_eq!(
            recs[3..],
            [
                "contoso.com IN A 192.0.2.10",
                "_xmpp-server._tcp.contoso.com IN SRV 0 0 5269 contoso.com.",
                "_xmpps-server._tcp.contoso.com IN SRV 0 0 0 .",
                "*.fabrikam.com IN A 192.0.2.10",
            ]
        );
        assert!(out.contains(
            "options { response-policy { zone \"fedgate-partners\"; } qname-wait-recurse no min-update-interval 0; };"
        ));
    }

    #[test]
    fn hosts_has_addresses_only_and_says_what_it_cannot_express() {
        let out = render(
            InternalDnsFormat::Hosts,
            &patterns(&["contoso.com", "*.fabrikam.com"]),
            target("192.0.2.10:5270"),
        );
        assert_eq!(records(&out), ["192.0.2.10 contoso.com"]);
        let notes = comments(&out, "#");
        assert!(
            notes
                .iter()
                .any(|l| l.starts_with("# *.fabrikam.com: a hosts file cannot say")),
            "{out}"
        );
        assert!(
            notes
                .iter()
                .any(|l| l.contains("WARNING") && l.contains("5270")),
            "{out}"
        );
    }

    #[test]
    fn prosody_is_a_hosts_file_that_also_names_the_srv_owners() {
        let out = render(
            InternalDnsFormat::Prosody,
            &patterns(&["contoso.com", "*.fabrikam.com"]),
            target("192.0.2.10:5269"),
        );
        assert_eq!(
            records(&out),
            ["192.0.2.10 contoso.com _xmpp-server._tcp.contoso.com _xmpps-server._tcp.contoso.com"]
        );
        assert!(out.contains("unbound = { hoststxt = \"/etc/prosody/fedgate-partners.hosts\" }"));
        assert!(out.contains("# *.fabrikam.com: a hosts file cannot say"));
        assert!(!out.contains("WARNING"));
        let other_port = render(
            InternalDnsFormat::Prosody,
            &patterns(&["contoso.com"]),
            target("192.0.2.10:5270"),
        );
        assert!(
            other_port
                .contains("WARNING: Prosody connects to port 5269, but the listener is on 5270")
        );
    }

    #[test]
    fn output_is_sorted_deduplicated_and_the_same_for_the_same_list() {
        let a = render(
            InternalDnsFormat::Hosts,
            &patterns(&["b.example", "a.example", "b.example"]),
            target("192.0.2.10:5269"),
        );
        let b = render(
            InternalDnsFormat::Hosts,
            &patterns(&["a.example", "b.example"]),
            target("192.0.2.10:5269"),
        );
        assert_eq!(a, b);
        assert_eq!(
            records(&a),
            ["192.0.2.10 a.example", "192.0.2.10 b.example"]
        );
    }

    #[test]
    fn an_empty_list_gives_only_comments() {
        for format in InternalDnsFormat::ALL {
            let out = render(*format, &[], target("192.0.2.10:5269"));
            let recs = records(&out);
            assert!(
                recs.iter()
                    .all(|l| *l == "server:" || l.starts_with('$') || l.starts_with('@')),
                "{format}: {out}"
            );
        }
    }

    #[test]
    fn target_is_the_listener_unless_overridden_and_never_unspecified() {
        let listen = target("192.0.2.10:5270");
        assert_eq!(super::target(listen, None), Ok(listen));
        assert_eq!(
            super::target(listen, Some("198.51.100.7")),
            Ok(target("198.51.100.7:5270"))
        );
        assert_eq!(
            super::target(listen, Some("198.51.100.7:5269")),
            Ok(target("198.51.100.7:5269"))
        );
        assert_eq!(
            super::target(listen, Some("[2001:db8::1]")),
            Ok(target("[2001:db8::1]:5270"))
        );
        // An ephemeral listener port (0) is no address to publish either.
        let ephemeral = target("127.0.0.1:0");
        assert_eq!(
            super::target(ephemeral, None).unwrap_err().parameter,
            "--address"
        );
        assert!(super::target(ephemeral, Some("127.0.0.1")).is_err());
        let any = target("0.0.0.0:5269");
        let e = super::target(any, None).unwrap_err();
        assert_eq!(e.parameter, "--address");
        assert!(
            e.reason
                .contains("internal_listener.listen is 0.0.0.0:5269"),
            "{e}"
        );
        assert_eq!(
            super::target(any, Some("10.0.0.5")),
            Ok(target("10.0.0.5:5269"))
        );
        for bad in ["gateway.corp", "10.0.0.5:x", "0.0.0.0", "10.0.0.5:0", ""] {
            let e = super::target(any, Some(bad)).unwrap_err();
            assert_eq!(e.parameter, "--address", "{bad}");
        }
    }
}
