use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::smpp::encoding::Concatenation;
use crate::smpp::{MessageIdFormat, StatusAction};

/// A TOML file in a fresh temporary directory, loaded through the same path as `--config`.
fn load_toml(name: &str, text: &str) -> Result<Settings, ConfigError> {
    let dir = std::env::temp_dir().join(format!("otpgw-cfg-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("c.toml");
    std::fs::write(&file, text).unwrap();
    Settings::load(Some(&file))
}

fn load_and_validate(name: &str, text: &str) -> Result<Config, ConfigError> {
    load_toml(name, text)?.validate()
}

#[test]
fn defaults_validate_with_the_demo_client_on_loopback() {
    let v = Settings::default().validate().unwrap();
    assert!(v.auth.demo_client);
    assert!(v.hash_key.generated);
    assert!(v.smpp.embedded.is_some());
    assert_eq!(v.auth.clients[0].id, DEMO_CLIENT_ID);
}

#[test]
fn no_demo_client_on_a_public_listener() {
    let mut s = Settings::default();
    s.http.listen = "0.0.0.0:8080".parse().unwrap();
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("auth.clients"), "{err}");
}

#[test]
fn invalid_values_name_their_key() {
    type Mutation = fn(&mut Settings);
    let cases: Vec<(Mutation, &str)> = vec![
        (|s| s.otp.code_length = 3, "otp.code_length"),
        (|s| s.otp.code_length = 11, "otp.code_length"),
        (|s| s.otp.max_attempts = 0, "otp.max_attempts"),
        (|s| s.otp.hash_key = Some("short".into()), "otp.hash_key"),
        (
            |s| s.otp.id_retention = Duration::from_secs(1),
            "otp.id_retention",
        ),
        (|s| s.smpp.session.binds = 0, "smpp.binds"),
        (
            |s| s.smpp.session.receiver_bind = true,
            "smpp.receiver_bind",
        ),
        (|s| s.smpp.session.max_tps = 1_000_000, "smpp.max_tps"),
        (
            |s| s.smpp.session.response_timeout = Duration::ZERO,
            "smpp.response_timeout",
        ),
    ];
    for (mutate, key) in cases {
        let mut s = Settings::default();
        mutate(&mut s);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains(key), "expected {key} in {err}");
    }
}

#[test]
fn malformed_values_name_their_key_when_parsed() {
    let cases = [
        ("[smpp]\nurl = \"http://x\"", "smpp.url"),
        ("[store]\nbackend = \"etcd\"", "store.backend"),
        ("[http]\nlisten = \"nowhere\"", "http.listen"),
        (
            "[policy]\nblocked_numbers = [\"123\"]",
            "policy.blocked_numbers",
        ),
        ("[smpp]\nconcatenation = \"udh7\"", "smpp.concatenation"),
        (
            "[smpp]\nmessage_id_format = \"base64\"",
            "smpp.message_id_format",
        ),
        (
            "[smpp.simulator]\nerror_rate = 2.0",
            "smpp.simulator.error_rate",
        ),
        (
            "[smpp.simulator]\nmessage_ids = \"octal\"",
            "smpp.simulator.message_ids",
        ),
        (
            "[smpp.simulator.receipt_states]\nlost = 1",
            "smpp.simulator.receipt_states",
        ),
        ("[smpp]\nbind_mode = \"receiver\"", "smpp.bind_mode"),
        (
            "[smpp.status_map]\n\"0x04zz\" = \"blocked\"",
            "smpp.status_map",
        ),
        (
            "[smpp.status_map]\n\"0x0400\" = \"gone\"",
            "smpp.status_map",
        ),
        ("[smpp]\nwindoww = 3", "smpp.windoww"),
        ("[otp]\nttl = \"forever\"", "otp.ttl"),
        ("[api]\ncamara_version = \"1.2.0\"", "api.camara_version"),
        ("[api]\ncamara_version = 1.1", "api.camara_version"),
    ];
    for (i, (toml, key)) in cases.into_iter().enumerate() {
        let err = load_and_validate(&format!("bad{i}"), toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "expected {key} in {err}");
    }
}

const ROUTES: &str = r#"
[smpp]
max_tps = 7

[[smpp.routes]]
name = "a"
url = "smpp://id:pw@host-a:2775"
prefixes = ["+3460"]
priority = 1
source_addr = "12345"
source_ton = 2
source_npi = 1
binds = 3
concatenation = "sar"
dest_ton = 2
dest_npi = 1

[[smpp.routes]]
name = "b"
url = "smpps://id:pw@host-b:3550"
priority = 2
system_type = "OTP"
message_id_format = "decimal"
"#;

#[test]
fn routes_validate_and_inherit_smpp_defaults() {
    let v = load_and_validate("routes", ROUTES).unwrap();
    let routes = &v.smpp.routes;
    assert_eq!(routes.len(), 2);
    let (a, b) = (&routes[0], &routes[1]);
    assert_eq!(
        (
            a.options.binds,
            a.options.max_tps,
            a.options.source_ton.zip(a.options.source_npi)
        ),
        (3, 7, Some((2, 1)))
    );
    assert_eq!(a.options.dest_ton.zip(a.options.dest_npi), Some((2, 1)));
    assert_eq!(
        b.options.dest_ton, None,
        "b keeps the international default"
    );
    assert_eq!(a.options.concatenation, Concatenation::Sar);
    assert!(b.smsc.tls && !a.smsc.tls);
    assert_eq!(b.options.source_addr.as_str(), "OTPGateway");
    assert_eq!(b.options.message_id_format, MessageIdFormat::Decimal);
    assert!(v.smpp.embedded.is_none());

    assert!(!format!("{a:?}").contains("pw"), "password redacted");
    let err = load_and_validate("dup", &ROUTES.replace("name = \"b\"", "name = \"a\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("smpp.routes") && err.contains("unique"),
        "{err}"
    );
    let err = load_and_validate("prefix", &ROUTES.replace("\"+3460\"", "\"34\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("smpp.routes"), "{err}");
    let err = load_and_validate("npi", &ROUTES.replace("source_npi = 1\n", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("source_ton"), "{err}");
    let err = load_and_validate("dest", &ROUTES.replace("dest_npi = 1\n", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dest_ton"), "{err}");
    let err = load_and_validate(
        "ca",
        &ROUTES.replace(
            "priority = 2\n",
            "priority = 2\nca_file = \"/nonexistent.pem\"\n",
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("smpp.routes"), "{err}");
    let err = load_and_validate(
        "unknown",
        &ROUTES.replace("priority = 2\n", "priority = 2\nbindz = 2\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("smpp.routes.bindz"), "{err}");
}

#[test]
fn smpp_url_is_route_0_when_no_routes_are_listed() {
    let v = load_and_validate(
        "url",
        "[smpp]\nurl = \"smpp://otp:p%40ss@smsc.example:2775\"\nbinds = 2\n",
    )
    .unwrap();
    assert_eq!(v.smpp.routes.len(), 1);
    let r = &v.smpp.routes[0];
    assert_eq!(
        (r.name.as_str(), r.smsc.host.as_str(), r.smsc.port),
        (DEFAULT_ROUTE, "smsc.example", 2775)
    );
    assert_eq!(r.smsc.password.expose(), "p@ss");
    assert_eq!(r.options.binds, 2);
    assert!(v.smpp.embedded.is_none());
}

#[test]
fn status_map_parses_hex_and_decimal() {
    let v = load_and_validate(
        "status",
        "[smpp.status_map]\n\"0x0400\" = \"blocked\"\n\"1025\" = \"not_allowed\"\n\"0x0B\" = \"unavailable\"\n",
    )
    .unwrap();
    let map = &v.smpp.routes[0].options.status_map;
    assert_eq!(map.get(0x400), Some(StatusAction::Blocked));
    assert_eq!(map.get(1025), Some(StatusAction::NotAllowed));
    assert_eq!(map.get(0x0B), Some(StatusAction::Unavailable));
}

#[test]
fn a_signing_key_file_must_hold_a_p256_key() {
    let dir = std::env::temp_dir().join(format!("otpgw-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.pem");
    let der = crate::auth::jwt::generate_pkcs8().unwrap();
    std::fs::write(&good, crate::auth::jwt::pkcs8_pem(&der)).unwrap();
    let mut s = Settings::default();
    s.auth.signing_key_file = Some(good);
    assert_eq!(s.validate().unwrap().auth.signing_keys.len(), 1);
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    for path in [bad, dir.join("missing.pem")] {
        let mut s = Settings::default();
        s.auth.signing_key_file = Some(path);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.signing_key_file"), "{err}");
    }
}

#[test]
fn signing_key_files_are_loaded_in_order_and_exclude_signing_key_file() {
    let dir = std::env::temp_dir().join(format!("otpgw-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str| {
        let path = dir.join(name);
        let der = crate::auth::jwt::generate_pkcs8().unwrap();
        std::fs::write(&path, crate::auth::jwt::pkcs8_pem(&der)).unwrap();
        path
    };
    let (old, new) = (write("old.pem"), write("new.pem"));
    let mut s = Settings::default();
    s.auth.signing_key_files = vec![old.clone(), new.clone()];
    let keys = s.validate().unwrap().auth.signing_keys;
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[1].expose_value(),
        &std::fs::read(&new).unwrap(),
        "the list order is kept: the last is the newest"
    );
    let mut s = Settings::default();
    s.auth.signing_key_files = vec![old.clone(), old.clone()];
    assert!(s.validate().unwrap_err().to_string().contains("twice"));
    let mut s = Settings::default();
    s.auth.signing_key_file = Some(old.clone());
    s.auth.signing_key_files = vec![new];
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("auth.signing_key_files"), "{err}");
}

#[test]
fn a_client_needs_one_way_to_authenticate_and_names_it_when_it_has_two() {
    use crate::auth::AuthMethod;
    use crate::config::ClientEntry;
    let dir = std::env::temp_dir().join(format!("otpgw-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"C1RO4-xK0hLA_UfIViPnVlUTjCjNqFL5CraF7jxIuEk","y":"ivvC3alOQxbTIGwKTbs2Ex27AL1PSwdpYhRBc13hbGc"}]}"#;
    let file = dir.join("client.jwks");
    std::fs::write(&file, jwks).unwrap();
    let validate = |entry: ClientEntry| {
        let mut s = Settings::default();
        s.auth.clients = vec![entry];
        s.validate().map(|v| v.auth.clients[0].clone())
    };
    let base = || ClientEntry {
        id: "app".into(),
        scopes: vec![crate::auth::SEND_VALIDATE_SCOPE.into()],
        ..Default::default()
    };
    // Keys only → private_key_jwt; the file's content is loaded into jwks.
    let from_file = validate(ClientEntry {
        jwks_file: Some(file.clone()),
        ..base()
    })
    .unwrap();
    assert_eq!(from_file.auth_method, Some(AuthMethod::PrivateKeyJwt));
    assert_eq!(from_file.jwks.as_deref(), Some(jwks));
    // Secret only → client_secret.
    let secret = validate(ClientEntry {
        secret: "app-secret-1".into(),
        ..base()
    })
    .unwrap();
    assert_eq!(secret.auth_method, Some(AuthMethod::ClientSecret));
    // Both: only with auth_method named.
    let both = || ClientEntry {
        secret: "app-secret-1".into(),
        jwks: Some(jwks.into()),
        ..base()
    };
    assert!(validate(both()).is_err());
    assert!(validate(ClientEntry {
        auth_method: Some(AuthMethod::Any),
        ..both()
    })
    .is_ok());
    for bad in [
        base(),
        ClientEntry {
            jwks: Some("{\"keys\":[]}".into()),
            ..base()
        },
        ClientEntry {
            jwks: Some(jwks.into()),
            jwks_uri: Some("https://app.example/jwks".into()),
            ..base()
        },
        ClientEntry {
            jwks_uri: Some("ftp://app.example/jwks".into()),
            ..base()
        },
        ClientEntry {
            auth_method: Some(AuthMethod::PrivateKeyJwt),
            secret: "app-secret-1".into(),
            ..base()
        },
        ClientEntry {
            jwks_file: Some(dir.join("missing.jwks")),
            ..base()
        },
    ] {
        let shown = format!("{bad:?}");
        assert!(validate(bad).is_err(), "{shown}");
    }
}

#[test]
fn file_and_environment_layers_apply_in_order() {
    let s = load_toml("layers", "[otp]\ncode_length = 8\nttl = \"2m\"\n").unwrap();
    assert_eq!(s.otp.code_length, 8);
    assert_eq!(s.otp.ttl, Duration::from_secs(120));
    assert!(load_toml("layers2", "[otp]\nunknown_key = 1\n").is_err());
    assert!(Settings::load(Some(std::path::Path::new("/nonexistent/missing.toml"))).is_err());
}

#[test]
fn no_secret_of_the_configuration_reaches_its_debug_form() {
    let dir = std::env::temp_dir().join(format!("otpgw-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("signing.pem");
    let der = crate::auth::jwt::generate_pkcs8().unwrap();
    let pem = crate::auth::jwt::pkcs8_pem(&der);
    std::fs::write(&key, &pem).unwrap();
    let toml = format!(
        r#"
[http]
listen = "0.0.0.0:8080"
[auth]
signing_key_file = "{}"
[[auth.clients]]
id = "cool-app"
secret = "client-secret-one"
[otp]
hash_key = "hash-key-hash-key-hash-key-hash-key-0123"
[smpp]
url = "smpp://otp:urlpass1@smsc.example:2775"
[[smpp.routes]]
name = "r"
url = "smpps://otp:routepw2@smsc2.example:3550"
"#,
        key.display()
    );
    let config = load_and_validate("secrets", &toml).unwrap();
    let shown = format!("{config:?} {:?}", load_toml("secrets2", &toml).unwrap());
    let body_line = pem.lines().nth(1).unwrap();
    for secret in [
        "client-secret-one",
        "hash-key-hash-key",
        "urlpass1",
        "routepw2",
        body_line,
    ] {
        assert!(!shown.contains(secret), "{secret} appears in {shown}");
    }
    assert!(shown.contains("[redacted]"));
}

#[test]
fn the_redis_backend_needs_one_target_and_keeps_its_password_secret() {
    let err = load_and_validate("redis0", "[store]\nbackend = \"redis\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.redis_url"), "{err}");
    let both = "[store]\nbackend = \"redis\"\nredis_url = \"redis://a:1\"\nredis_cluster_urls = [\"redis://b:1\"]\n";
    assert!(load_and_validate("redis1", both).is_err());
    let stray = "[store]\nredis_url = \"redis://a:1\"\n";
    let err = load_and_validate("redis2", stray).unwrap_err().to_string();
    assert!(err.contains("store.backend"), "{err}");
    let v = load_and_validate(
        "redis3",
        "[store]\nbackend = \"redis\"\nredis_url = \"redis://:hunter22@redis.example:6379/0\"\n",
    )
    .unwrap();
    assert!(matches!(v.store, StoreConfig::Redis { .. }));
    assert!(!format!("{v:?}").contains("hunter22"));
    let v = load_and_validate(
        "redis4",
        "[store]\nbackend = \"redis\"\nredis_cluster_urls = [\"redis://n1:7000\", \"redis://n2:7001\"]\n",
    )
    .unwrap();
    assert!(matches!(
        v.store,
        StoreConfig::Redis { target: crate::store::RedisTarget::Cluster(ref urls), .. } if urls.len() == 2
    ));
}

#[test]
fn rediss_certificate_files_are_read_at_load_and_need_rediss_urls() {
    let dir = std::env::temp_dir().join(format!("otpgw-cfg-{}-rediss", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&ca, "CA PEM").unwrap();
    std::fs::write(&cert, "CERT PEM").unwrap();
    std::fs::write(&key, "KEY PEM sekrit-key-material").unwrap();
    let files = format!(
        "redis_ca_file = {:?}\nredis_client_cert_file = {:?}\nredis_client_key_file = {:?}\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    let v = load_and_validate(
        "rediss1",
        &format!("[store]\nbackend = \"redis\"\nredis_url = \"rediss://r.example:6380\"\n{files}"),
    )
    .unwrap();
    let StoreConfig::Redis { ref tls, .. } = v.store else {
        panic!("redis expected")
    };
    assert_eq!(tls.ca.as_deref(), Some(&b"CA PEM"[..]));
    assert!(tls.client.is_some());
    assert!(
        !format!("{v:?}").contains("sekrit"),
        "the client key is a secret"
    );

    let plain =
        format!("[store]\nbackend = \"redis\"\nredis_url = \"redis://r.example:6379\"\n{files}");
    let err = load_and_validate("rediss2", &plain)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("store.redis_ca_file") && err.contains("rediss://"),
        "{err}"
    );

    let half = format!(
        "[store]\nbackend = \"redis\"\nredis_cluster_urls = [\"rediss://n1:7000\"]\nredis_client_cert_file = {:?}\n",
        cert.display()
    );
    let err = load_and_validate("rediss3", &half).unwrap_err().to_string();
    assert!(err.contains("store.redis_client_cert_file"), "{err}");

    let missing = "[store]\nbackend = \"redis\"\nredis_url = \"rediss://r:1\"\nredis_ca_file = \"/nonexistent/ca.pem\"\n";
    let err = load_and_validate("rediss4", missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("store.redis_ca_file") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}

#[test]
fn camara_version_defaults_to_1_1_1_and_reads_1_1_0_from_a_file() {
    use crate::api::version::CamaraVersion;
    assert_eq!(
        Settings::default().validate().unwrap().api.camara_version,
        CamaraVersion::V1_1_1
    );
    let from_file = load_and_validate("v110", "[api]\ncamara_version = \"1.1.0\"").unwrap();
    assert_eq!(from_file.api.camara_version, CamaraVersion::V1_1_0);
}
