//! Settings: defaults, errors that name their setting, secrets kept out of output.
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_fill_what_is_not_set() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
    assert!(s.database_url.is_sqlite());
    assert!(s.webhook_secrets.is_empty());
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(s.is_local_http());
    let err = s.require_webhook_secrets().unwrap_err();
    assert_eq!(err.name, "PORTAL_WEBHOOK_SECRETS");
    assert!(err.to_string().contains("portal-invites secret"));
}

#[test]
fn a_malformed_value_names_its_setting() {
    for (name, value) in [
        ("PORTAL_LISTEN", "8080"),
        ("PORTAL_PUBLIC_URL", "portal.example.com"),
        ("PORTAL_PUBLIC_URL", "ftp://portal.example.com"),
        ("PORTAL_DATABASE_URL", "mysql://localhost/x"),
        ("PORTAL_WEBHOOK_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw nope"),
        ("PORTAL_LOG", "info,[[["),
        ("PORTAL_LOG_FORMAT", "xml"),
    ] {
        let err = Settings::load(None, env(&[(name, value)])).unwrap_err();
        assert_eq!(err.name, name, "{value}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

#[test]
fn the_audit_trail_is_kept_400_days_unless_set_between_a_day_and_ten_years() {
    let days = |n: u64| Duration::from_secs(n * 86_400);
    assert_eq!(Settings::load(None, env(&[])).unwrap().audit_retention, days(400));
    for (value, kept) in [("1d", days(1)), ("24h", days(1)), (" 90d ", days(90)), ("3650d", days(3650))] {
        let s = Settings::load(None, env(&[("PORTAL_AUDIT_RETENTION", value)])).unwrap();
        assert_eq!(s.audit_retention, kept, "{value}");
    }
    for refused in ["0d", "23h", "3651d", "400", "400 days", "-1d", "99999999999999999999d"] {
        let err = Settings::load(None, env(&[("PORTAL_AUDIT_RETENTION", refused)])).unwrap_err();
        assert_eq!(err.name, "PORTAL_AUDIT_RETENTION", "{refused}");
        assert!(err.message.contains("1d to 3650d"), "{err}");
    }
}

#[test]
fn metrics_are_off_unless_an_address_other_than_the_public_one_is_set() {
    assert_eq!(Settings::load(None, env(&[])).unwrap().metrics_listen, None);
    assert_eq!(Settings::load(None, env(&[("PORTAL_METRICS_LISTEN", "  ")])).unwrap().metrics_listen, None);
    let s = Settings::load(None, env(&[("PORTAL_METRICS_LISTEN", " 127.0.0.1:9464 ")])).unwrap();
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    for refused in ["9464", "localhost:9464", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:8080"] {
        let err = Settings::load(None, env(&[("PORTAL_METRICS_LISTEN", refused)])).unwrap_err();
        assert_eq!(err.name, "PORTAL_METRICS_LISTEN", "{refused}");
    }
    let same = env(&[("PORTAL_LISTEN", "0.0.0.0:9000"), ("PORTAL_METRICS_LISTEN", "0.0.0.0:9000")]);
    assert!(Settings::load(None, same).unwrap_err().message.contains("PORTAL_LISTEN"));
}

#[test]
fn secrets_are_space_separated_and_never_printed() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let other = WebhookSecret::generate();
    let s =
        Settings::load(None, env(&[("PORTAL_WEBHOOK_SECRETS", &format!(" {secret}  {other} "))])).unwrap();
    assert_eq!(s.webhook_secrets.len(), 2);
    let shown = format!("{s:?}");
    assert!(!shown.contains("MfKQ9r8") && !shown.contains(&other[6..]));
    let err = Settings::load(None, env(&[("PORTAL_WEBHOOK_SECRETS", "whsec_c2hvcnQ=")])).unwrap_err();
    assert!(!err.to_string().contains("c2hvcnQ"));
}

#[test]
fn a_database_password_is_hidden() {
    let s =
        Settings::load(None, env(&[("PORTAL_DATABASE_URL", "postgres://app:hunter2@db/portal")])).unwrap();
    assert!(!format!("{:?} {}", s, s.database_url).contains("hunter2"));
    assert!(s.database_url.expose().contains("hunter2"));
}

#[test]
fn the_environment_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0:9000\"\nlog_format = \"json\"\nwebhook_secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
    )
    .unwrap();
    let s = Settings::load(Some(&path), env(&[("PORTAL_LISTEN", "127.0.0.1:9001")])).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:9001");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.webhook_secrets.len(), 1);
}

#[test]
fn the_file_refuses_unknown_keys_and_bad_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.toml");
    std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
    let err = Settings::load(Some(&path), env(&[])).unwrap_err();
    assert_eq!(err.name, "--config");
    assert!(err.message.contains("lisen"));
    std::fs::write(&path, "listen = \n").unwrap();
    assert!(Settings::load(Some(&path), env(&[])).unwrap_err().message.contains("TOML"));
    let missing = dir.path().join("missing.toml");
    assert!(Settings::load(Some(&missing), env(&[])).unwrap_err().message.contains("cannot be read"));
}

#[test]
fn delivery_settings_are_checked_and_secrets_hidden() {
    let s = Settings::load(
        None,
        env(&[
            ("PORTAL_SMTP_URL", "smtp://user:hunter2@mail.example.com:587?tls=required"),
            ("PORTAL_TWILIO_ACCOUNT_SID", "AC123"),
            ("PORTAL_TWILIO_AUTH_TOKEN", "tw-secret"),
            ("PORTAL_TWILIO_FROM", "+15550001111"),
        ]),
    )
    .unwrap();
    assert!(s.mail.smtp_url.is_some() && s.twilio.is_some());
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("tw-secret"), "{shown}");
    assert_eq!(s.invitation_ttl, Duration::from_secs(7 * 86_400));

    for (pairs, name) in [
        (vec![("PORTAL_TWILIO_ACCOUNT_SID", "AC123")], "PORTAL_TWILIO_AUTH_TOKEN"),
        (vec![("PORTAL_SMTP_URL", "http://mail.example.com")], "PORTAL_SMTP_URL"),
        (vec![("PORTAL_MAIL_FROM", "not a mailbox")], "PORTAL_MAIL_FROM"),
        (vec![("PORTAL_INVITATION_TTL", "a week")], "PORTAL_INVITATION_TTL"),
    ] {
        assert_eq!(Settings::load(None, env(&pairs)).unwrap_err().name, name);
    }
}

#[test]
fn portal_settings_have_defaults_and_bounds() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.portal.reset_ttl, Duration::from_secs(3600));
    assert_eq!(s.portal.password_min_length, 8);
    assert_eq!(s.portal.session_idle, Duration::from_secs(1800));
    assert_eq!(s.portal.session_lifetime, Duration::from_secs(12 * 3600));
    assert!(s.portal.trusted_proxies.is_empty() && s.portal.hashing_limit >= 1);
    let s = Settings::load(None, env(&[("PORTAL_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7 ::1")])).unwrap();
    assert_eq!(s.portal.trusted_proxies.len(), 3);
    for (name, value) in [
        ("PORTAL_PASSWORD_MIN_LENGTH", "7"),
        ("PORTAL_PASSWORD_MIN_LENGTH", "65"),
        ("PORTAL_SESSION_IDLE", "soon"),
        ("PORTAL_SESSION_LIFETIME", "99999999999d"),
        ("PORTAL_RESET_TTL", "8d"),
        ("PORTAL_INVITATION_TTL", "91d"),
        ("PORTAL_SEND_TIMEOUT", "0s"),
        ("PORTAL_SEND_TIMEOUT", "121s"),
        ("PORTAL_SHUTDOWN_GRACE", "1h"),
        ("PORTAL_TRUSTED_PROXIES", "proxy.internal"),
        ("PORTAL_HASHING_LIMIT", "0"),
    ] {
        assert_eq!(Settings::load(None, env(&[(name, value)])).unwrap_err().name, name, "{value}");
    }
}

#[test]
fn durations_take_a_unit() {
    assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    for bad in ["", "7", "d", "0h", "-1h", "1.5h", "1w"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

mod hostile_values {
    use super::*;
    use crate::domain::hostile;
    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;

    const LIFETIMES: [&str; 4] =
        ["PORTAL_INVITATION_TTL", "PORTAL_RESET_TTL", "PORTAL_SESSION_IDLE", "PORTAL_SESSION_LIFETIME"];

    /// A duration as an operator might mistype it: any number (up to u64 and beyond) and any unit.
    fn near_duration() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<u64>(), "[smhdw]?").prop_map(|(n, unit)| format!("{n}{unit}")),
            ("[0-9]{1,30}", "[smhd]").prop_map(|(n, unit)| format!("{n}{unit}")),
            hostile::text(),
        ]
    }

    proptest! {
        #[test]
        fn any_value_of_any_setting_loads_or_names_its_setting(
            setting in prop::sample::select(SETTINGS.iter().map(|s| s.env).collect::<Vec<_>>()),
            value in prop_oneof![hostile::text(), near_duration()],
        ) {
            match Settings::load(None, env(&[(setting, &value)])) {
                Ok(_) => {}
                // One Twilio setting alone is reported as the first of the others that is missing.
                Err(e) if setting.starts_with("PORTAL_TWILIO_") => prop_assert!(e.name.starts_with("PORTAL_TWILIO_")),
                Err(e) => {
                    prop_assert_eq!(&e.name, setting);
                    prop_assert!(!e.to_string().contains('\n'), "one line: {}", e);
                }
            }
        }

        #[test]
        fn a_lifetime_from_the_environment_never_overflows_date_arithmetic(
            setting in prop::sample::select(LIFETIMES.to_vec()),
            value in near_duration(),
        ) {
            let Ok(settings) = Settings::load(None, env(&[(setting, &value)])) else { return Ok(()) };
            // Every lifetime is added to "now" (or taken from it) somewhere; a far future "now" must
            // still be representable after that, either way.
            let now: DateTime<Utc> = "2200-01-01T00:00:00Z".parse().unwrap();
            for lifetime in [
                settings.invitation_ttl,
                settings.portal.reset_ttl,
                settings.portal.session_idle,
                settings.portal.session_lifetime,
            ] {
                let delta = TimeDelta::from_std(lifetime);
                prop_assert!(delta.is_ok_and(|d| {
                    now.checked_add_signed(d).is_some() && now.checked_sub_signed(d).is_some()
                }), "{setting}={value}");
            }
        }

        #[test]
        fn durations_round_trip_in_every_unit(n in 1u64..=365, unit in prop::sample::select(vec![("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)])) {
            let (suffix, seconds) = unit;
            prop_assert_eq!(parse_duration(&format!(" {n}{suffix} ")), Some(Duration::from_secs(n * seconds)));
        }
    }

    #[test]
    fn a_duration_beyond_a_year_is_refused_and_named() {
        assert_eq!(parse_duration("365d"), Some(Duration::from_secs(365 * 86_400)));
        for too_long in ["366d", "8761h", "100000000d", "18446744073709551615s"] {
            assert_eq!(parse_duration(too_long), None, "{too_long}");
        }
        let err = Settings::load(None, env(&[("PORTAL_SESSION_LIFETIME", "100000000d")])).unwrap_err();
        assert_eq!(err.name, "PORTAL_SESSION_LIFETIME");
        assert!(err.message.contains("365d"), "{err}");
    }
}

/// The README's settings table: (variable, default column) per row, in order.
fn readme_settings() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table =
        readme.split("| variable | default | meaning |").nth(1).expect("the README has a settings table");
    table
        .lines()
        .skip(2) // the header's separator row, after the rest of the header line
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_lists_every_setting_with_its_default_and_nothing_else() {
    let rows = readme_settings();
    let listed: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    let declared: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
    assert_eq!(listed, declared, "the README's table and SETTINGS differ (names or order)");
    for (setting, (name, default)) in SETTINGS.iter().zip(&rows) {
        match setting.default {
            Some(value) => assert_eq!(default, &format!("`{value}`"), "{name}"),
            None => assert!(!default.starts_with('`'), "{name} has no default, the README shows {default}"),
        }
    }
}

#[test]
fn each_setting_is_listed_once_under_its_environment_name() {
    for setting in SETTINGS {
        let file_key = setting.env.strip_prefix("PORTAL_").map(str::to_ascii_lowercase);
        assert!(file_key.is_some_and(|k| !k.is_empty()), "{} needs the PORTAL_ prefix", setting.env);
    }
    let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len(), "a setting is listed twice");
}
