//! `slo-gate certs`: a throw-away CA for one SPIFFE trust domain, a server certificate and
//! SPIFFE client certificates (X.509-SVIDs) signed by it, so that TLS and mTLS can be tried
//! in three commands (`certs init`, `serve --tls-*`, a client). Made for tests and first
//! steps: production certificates come from the mesh or the organisation's CA (SPIRE,
//! cert-manager), and the collector only reads PEM files, whoever made them.
//!
//! The CA names its trust domain as its own URI SAN (`spiffe://prod.example`, which the
//! X.509-SVID standard allows a signing certificate), so `certs client` can refuse an ID of
//! another trust domain before making a certificate the collector would refuse. Keys are
//! ECDSA P-256 (rcgen's default), written with mode 0600. Nothing is overwritten without
//! `--force`, and nothing is written unless every file can be.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use collector::identity::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A CA for one SPIFFE trust domain: DIR/ca.pem (the bundle clients and `--tls-client-ca`
    /// use) and DIR/ca-key.pem.
    Ca(CaArgs),
    /// A server certificate signed by DIR's CA: DIR/server.pem and DIR/server-key.pem.
    Server(ServerArgs),
    /// A SPIFFE client certificate (X.509-SVID) signed by DIR's CA: DIR/NAME.pem and
    /// DIR/NAME-key.pem.
    Client(ClientArgs),
    /// All three: a CA, a server certificate and one client certificate per `--client`.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct Output {
    /// Directory of the files (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Days the certificates are valid, from yesterday (so that a clock a little behind does
    /// not refuse them).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(flatten)]
    pub out: Output,
    /// The SPIFFE trust domain whose IDs the CA signs.
    #[arg(long, default_value = "example.org")]
    pub trust_domain: String,
}

#[derive(Debug, Args)]
pub struct ServerNames {
    /// DNS names of the server [default: localhost, unless --ip is given].
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP addresses of the server [default: 127.0.0.1 and ::1, unless --dns is given].
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub out: Output,
    #[command(flatten)]
    pub names: ServerNames,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub out: Output,
    /// The workload's SPIFFE ID, e.g. spiffe://prod.example/ns/pay/sa/order-service.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub spiffe_id: String,
    /// File name stem [default: the ID's last path segment].
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub out: Output,
    /// The SPIFFE trust domain [default: that of the first --client].
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// A client's SPIFFE ID (repeatable); each gets NAME.pem and NAME-key.pem, NAME being the
    /// ID's last path segment.
    #[arg(long = "client", value_name = "SPIFFE_ID")]
    pub clients: Vec<String>,
    #[command(flatten)]
    pub names: ServerNames,
}

/// One file to write: its name in the directory, its text, whether it is a private key.
#[derive(Debug)]
struct File {
    name: String,
    text: String,
    secret: bool,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    let (out, files) = match command {
        CertsCommand::Ca(args) => {
            let files = ca_files(&args.trust_domain, &args.out)?.0;
            (args.out, files)
        }
        CertsCommand::Server(args) => {
            let ca = Ca::read(&args.out.dir)?;
            let files = server_files(&ca, &args.names, &args.out)?;
            (args.out, files)
        }
        CertsCommand::Client(args) => {
            let ca = Ca::read(&args.out.dir)?;
            let files = client_files(&ca, &args.spiffe_id, args.name.as_deref(), &args.out)?;
            (args.out, files)
        }
        CertsCommand::Init(args) => {
            let domain = match (&args.trust_domain, args.clients.first()) {
                (Some(domain), _) => domain.clone(),
                (None, Some(first)) => parse_id(first)?.trust_domain().to_string(),
                (None, None) => bail!("name the trust domain (--trust-domain) or at least one --client"),
            };
            let (mut files, ca) = ca_files(&domain, &args.out)?;
            files.extend(server_files(&ca, &args.names, &args.out)?);
            for id in &args.clients {
                files.extend(client_files(&ca, id, None, &args.out)?);
            }
            (args.out, files)
        }
    };
    for path in write_all(&out.dir, &files, out.force)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A CA able to sign, and its trust domain.
struct Ca {
    domain: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// The CA of `dir` (`ca.pem`, `ca-key.pem`, as `certs ca` wrote them).
    fn read(dir: &Path) -> anyhow::Result<Ca> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("cannot read {} (make it with `slo-gate certs ca`)", cert_path.display()))?;
        let key_pem =
            std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).with_context(|| format!("{}: not a private key", key_path.display()))?;
        let certs = collector::tls::pem::certificates(&cert_path)?;
        let domain = collector::tls::spiffe::uri_sans(&certs[0])
            .with_context(|| format!("{}: not a certificate", cert_path.display()))?
            .iter()
            .find_map(|uri| SpiffeId::parse(uri).ok().filter(|id| id.path().is_empty()))
            .map(|id| id.trust_domain().to_string())
            .with_context(|| {
                format!(
                    "{} names no SPIFFE trust domain (spiffe://DOMAIN); make it with `slo-gate certs ca`",
                    cert_path.display()
                )
            })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("{}: cannot sign with this CA", cert_path.display()))?;
        Ok(Ca { domain, issuer })
    }
}

fn parse_id(id: &str) -> anyhow::Result<SpiffeId> {
    SpiffeId::parse(id).with_context(|| format!("{id:?} is not a SPIFFE ID"))
}

/// Validity from yesterday to `days` from today, as whole UTC days.
fn validity(params: &mut CertificateParams, days: u32) {
    let today = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    let date = |day: i64| {
        let (y, m, d) = civil_from_days(day);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = date(today - 1);
    params.not_after = date(today + i64::from(days));
}

/// The (year, month, day) of a day counted from 1970-01-01: Howard Hinnant's `civil_from_days`
/// ("chrono-Compatible Low-Level Date Algorithms", proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

fn ca_files(domain: &str, out: &Output) -> anyhow::Result<(Vec<File>, Ca)> {
    let id = parse_id(&format!("spiffe://{domain}"))?;
    if id.trust_domain() != domain {
        bail!("trust domain {domain:?} holds a `/`; name the trust domain only");
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::OrganizationName, "slo-gate");
    params.distinguished_name.push(DnType::CommonName, format!("slo-gate throw-away CA of {domain}"));
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, out.days);
    let cert = params.self_signed(&key)?;
    let files = vec![
        File { name: "ca.pem".into(), text: cert.pem(), secret: false },
        File { name: "ca-key.pem".into(), text: key.serialize_pem(), secret: true },
    ];
    Ok((files, Ca { domain: domain.to_string(), issuer: Issuer::new(params, key) }))
}

fn server_files(ca: &Ca, names: &ServerNames, out: &Output) -> anyhow::Result<Vec<File>> {
    let (mut dns, mut ips) = (names.dns.clone(), names.ip.clone());
    if dns.is_empty() && ips.is_empty() {
        dns.push("localhost".into());
        ips.extend(["127.0.0.1".parse::<IpAddr>()?, "::1".parse()?]);
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns.clone())?;
    params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let common_name = dns.first().cloned().unwrap_or_else(|| ips[0].to_string());
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, out.days);
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(vec![
        File { name: "server.pem".into(), text: cert.pem(), secret: false },
        File { name: "server-key.pem".into(), text: key.serialize_pem(), secret: true },
    ])
}

fn client_files(ca: &Ca, id: &str, name: Option<&str>, out: &Output) -> anyhow::Result<Vec<File>> {
    let id = parse_id(id)?;
    if id.trust_domain() != ca.domain {
        bail!("{id} is of trust domain {:?}, but the CA signs for {:?}", id.trust_domain(), ca.domain);
    }
    let name = match name {
        Some(name) => name.to_string(),
        None => id.segments().last().map(str::to_string).with_context(|| format!("{id} has no path; give --name"))?,
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') || matches!(name.as_str(), "ca" | "server") {
        bail!("{name:?} cannot name the client's files (no `/`, no leading `.`, not ca or server)");
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name.clone());
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, out.days);
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(vec![
        File { name: format!("{name}.pem"), text: cert.pem(), secret: false },
        File { name: format!("{name}-key.pem"), text: key.serialize_pem(), secret: true },
    ])
}

/// Writes `files` into `dir`, keys with mode 0600; refuses before writing anything if one
/// exists and `force` is off. Returns the paths written, as `dir` was given.
fn write_all(dir: &Path, files: &[File], force: bool) -> anyhow::Result<Vec<PathBuf>> {
    if !force {
        let existing: Vec<_> =
            files.iter().map(|f| dir.join(&f.name)).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
        if !existing.is_empty() {
            bail!("{} already exist(s); pass --force to overwrite", existing.join(", "));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let path = dir.join(&file.name);
        let mode = if file.secret { 0o600 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // `mode` applies to new files only; an overwritten key gets 0600 too.
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
        out.write_all(file.text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector::config::{ClientAuth, TlsConfig};

    fn out(dir: &Path) -> Output {
        Output { dir: dir.to_path_buf(), days: 30, force: false }
    }

    #[test]
    fn dates_are_counted_from_the_epoch() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn init_makes_files_the_collector_loads_and_never_overwrites_by_default() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let id = "spiffe://prod.example/ns/pay/sa/order-service";
        let init = |force| {
            run(CertsCommand::Init(InitArgs {
                out: Output { force, ..out(&dir) },
                trust_domain: None,
                clients: vec![id.to_string()],
                names: ServerNames { dns: vec![], ip: vec![] },
            }))
        };
        init(false).unwrap();
        let names =
            ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "order-service.pem", "order-service-key.pem"];
        for name in names {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, if name.ends_with("-key.pem") { 0o600 } else { 0o644 }, "{name}");
        }

        // The collector takes the server files and the CA as the trust domain's bundle ...
        let mut tls = TlsConfig::new(dir.join("server.pem"), dir.join("server-key.pem"));
        tls.client_auth = ClientAuth::Required;
        tls.trust_domains.insert("prod.example".into(), dir.join("ca.pem"));
        collector::tls::server::ServerTls::load(&tls, Default::default()).unwrap();
        // ... and the client certificate is an X.509-SVID of the ID.
        let client = collector::tls::pem::certificates(&dir.join("order-service.pem")).unwrap();
        assert_eq!(collector::tls::spiffe::svid_id(&client[0]).unwrap().as_str(), id);

        let before = std::fs::read(dir.join("ca.pem")).unwrap();
        let err = init(false).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), before, "nothing was overwritten");
        init(true).unwrap();
        assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), before);
    }

    #[test]
    fn a_client_of_another_trust_domain_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        run(CertsCommand::Ca(CaArgs { out: out(tmp.path()), trust_domain: "prod.example".into() })).unwrap();
        let client = |id: &str, name: Option<&str>| {
            run(CertsCommand::Client(ClientArgs {
                out: out(tmp.path()),
                spiffe_id: id.into(),
                name: name.map(str::to_string),
            }))
        };
        let err = client("spiffe://staging.example/ns/pay", None).unwrap_err().to_string();
        assert!(err.contains("trust domain \"staging.example\", but the CA signs for \"prod.example\""), "{err}");
        let err = client("https://prod.example/a", None).unwrap_err().to_string();
        assert!(err.contains("is not a SPIFFE ID"), "{err}");
        client("spiffe://prod.example/ns/pay/sa/cart", Some("cart-a")).unwrap();
        assert!(tmp.path().join("cart-a.pem").exists() && tmp.path().join("cart-a-key.pem").exists());
        let err = run(CertsCommand::Server(ServerArgs {
            out: out(&tmp.path().join("empty")),
            names: ServerNames { dns: vec![], ip: vec![] },
        }))
        .unwrap_err();
        assert!(format!("{err:#}").contains("empty/ca.pem"), "{err:#}");
    }
}
