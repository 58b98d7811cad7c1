//! End to end in real headless Chromium, at phone width, driven through WebDriver: the invitation
//! email really delivered over SMTP, the set-up link opened from it, the password set, the home page,
//! log out, log in, and a forgotten password reset through the emailed link; and, for a shop whose
//! host runs its own portal, the customer who sets a password landing in that portal signed in
//! through OpenID Connect (`demo`'s stand-in host portal plays it). Each page is saved as a
//! screenshot under `target/screenshots/` and checked not to scroll sideways.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`bash .ci/run` installs them). Without them the
//! test says so and passes, unless `PORTAL_TEST_REQUIRE_BROWSER=1` (set by CI) makes it fail.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use portal_invites::cli::standin_portal::{HostRegistration, StandIn};

use crate::{
    helpers::*,
    invitations::{links, parse},
};

const PHONE_WIDTH: u32 = 360;

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .chain([PathBuf::from("/usr/bin").join(name)])
        .find(|p| p.is_file())
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start(chromedriver: &PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url, _profile: tempfile::tempdir().unwrap() }
    }

    async fn browser(&self, chromium: &PathBuf) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", "--disable-quic",
                         format!("--user-data-dir={}", self._profile.path().display())],
                "mobileEmulation": {"deviceMetrics": {"width": PHONE_WIDTH, "height": 760, "pixelRatio": 2.0},
                                    "userAgent": "Mozilla/5.0 (Linux; Android 14) Mobile"}
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a WebDriver session with Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Saves a screenshot and checks the page fits the phone's width.
async fn snapshot(browser: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    let widths = browser
        .execute("return [document.documentElement.scrollWidth, window.innerWidth];", vec![])
        .await
        .unwrap();
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert_eq!(inner, u64::from(PHONE_WIDTH), "{name}: the viewport is phone-wide");
    assert!(scroll <= inner, "{name}: the page scrolls sideways ({scroll} > {inner})");
}

/// The page's heading; `None` while a navigation replaces the page.
async fn heading(browser: &Client) -> Option<String> {
    browser.find(Locator::Css("h1")).await.ok()?.text().await.ok()
}

/// Waits until the page's heading is `expected`.
async fn wait_for_heading(browser: &Client, expected: &str) {
    let mut seen = None;
    for _ in 0..100 {
        seen = heading(browser).await;
        if seen.as_deref() == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected the heading {expected:?}, found {seen:?}");
}

/// Waits for the element with `id` to appear (after a submission that stays on the same page).
async fn wait_for_id(browser: &Client, id: &str) -> String {
    for _ in 0..100 {
        if let Ok(element) = browser.find(Locator::Id(id)).await
            && let Ok(text) = element.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("#{id} never appeared in:\n{}", browser.source().await.unwrap_or_default());
}

async fn fill(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn press(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Chromium and chromedriver, or `None` (the test is skipped) when they are not installed and
/// `PORTAL_TEST_REQUIRE_BROWSER=1` does not demand them.
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    let required = std::env::var("PORTAL_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(chromium), Some(chromedriver)) = (find_program("chromium"), find_program("chromedriver"))
    else {
        assert!(
            !required,
            "chromium and chromedriver are needed: apt-get install chromium chromium-driver (bash .ci/run does)"
        );
        eprintln!("skipped: install chromium and chromium-driver to run the browser test");
        return None;
    };
    Some((chromium, chromedriver))
}

#[tokio::test]
async fn a_customer_sets_up_logs_in_and_out_and_resets_the_password_in_chromium() {
    let Some((chromium, chromedriver)) = browser_programs() else { return };

    let stack = Stack::start(Backend::Sqlite).await;
    let app = &stack.app;
    let jana = customer("cus_456", Some("jana@example.com"), None, 1);
    let answer = app.submit("shop_1", &jana, "int_1", "email").await;
    assert_eq!(answer["message"]["code"], "invitation_sent");
    let received = stack.smtp.wait_for(1).await;
    let email = parse(&received[0]);
    let setup = links(&email.body_text(0).unwrap(), &app.url)[0].clone();

    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser(&chromium).await;

    // The set-up link from the delivered email.
    browser.goto(&setup).await.unwrap();
    wait_for_heading(&browser, "Set up your password").await;
    snapshot(&browser, "01-set-up-password").await;
    // A rule broken: the reason shows under the field.
    fill(&browser, "password", "password123").await;
    fill(&browser, "confirmation", "password123").await;
    press(&browser, "button[type=submit]").await;
    let error = wait_for_id(&browser, "password-error").await;
    assert!(error.contains("most common passwords"), "{error}");
    snapshot(&browser, "02-set-up-password-refused").await;
    fill(&browser, "password", "blue tractor seven").await;
    fill(&browser, "confirmation", "blue tractor seven").await;
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Hello, Jana").await;
    assert!(browser.current_url().await.unwrap().path().ends_with("/p/shop_1"));
    snapshot(&browser, "03-home").await;

    // Log out, log in.
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Log in").await;
    snapshot(&browser, "04-login").await;
    fill(&browser, "email", "jana@example.com").await;
    fill(&browser, "password", "wrong password!").await;
    press(&browser, "button[type=submit]").await;
    let error = wait_for_id(&browser, "login-error").await;
    assert!(error.contains("don't match"), "{error}");
    snapshot(&browser, "05-login-refused").await;
    fill(&browser, "password", "blue tractor seven").await;
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Hello, Jana").await;

    // Forgot the password: reset through the emailed link.
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Log in").await;
    browser.find(Locator::LinkText("Forgot your password?")).await.unwrap().click().await.unwrap();
    wait_for_heading(&browser, "Forgot your password?").await;
    snapshot(&browser, "06-forgot-password").await;
    fill(&browser, "email", "jana@example.com").await;
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Check your email").await;
    snapshot(&browser, "07-check-your-email").await;
    let received = stack.smtp.wait_for(2).await;
    let reset_email = parse(&received[1]);
    assert_eq!(reset_email.subject(), Some("Southside Auto Care: reset your Customer Portal password"));
    let reset = links(&reset_email.body_text(0).unwrap(), &app.url)[0].clone();
    browser.goto(&reset).await.unwrap();
    wait_for_heading(&browser, "Choose a new password").await;
    snapshot(&browser, "08-choose-new-password").await;
    fill(&browser, "password", "green bicycle ninety").await;
    fill(&browser, "confirmation", "green bicycle ninety").await;
    press(&browser, "button[type=submit]").await;
    wait_for_heading(&browser, "Hello, Jana").await;

    // The used link now explains itself.
    browser.goto(&reset).await.unwrap();
    wait_for_heading(&browser, "This link no longer works").await;
    snapshot(&browser, "09-link-no-longer-works").await;

    browser.close().await.unwrap();
    drop(driver);
}

#[tokio::test]
async fn a_customer_who_sets_a_password_lands_signed_in_in_the_hosts_portal_in_chromium() {
    let Some((chromium, chromedriver)) = browser_programs() else { return };

    let stack = Stack::start(Backend::Sqlite).await;
    let app = &stack.app;
    let public_url = url::Url::parse(&app.url).unwrap();
    let registration = HostRegistration::of_embedded_manifest(public_url, app.secret_text.clone()).unwrap();
    let standin = StandIn::start(registration, app.clock.clone()).await.unwrap();
    let shop = Shop { portal: Some(standin.portal("shop_1")), ..Shop::example("shop_1") };
    standin.add_shop(&shop.id, &shop.name);
    app.deliver(&shop_updated("shop_1", shop.snapshot(2))).await;
    let jana = customer("cus_456", Some("jana@example.com"), None, 1);
    let answer = app.submit("shop_1", &jana, "int_1", "email").await;
    assert_eq!(answer["message"]["code"], "invitation_sent");
    let received = stack.smtp.wait_for(1).await;
    let setup = links(&parse(&received[0]).body_text(0).unwrap(), &app.url)[0].clone();

    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser(&chromium).await;
    browser.goto(&setup).await.unwrap();
    wait_for_heading(&browser, "Set up your password").await;
    fill(&browser, "password", "blue tractor seven").await;
    fill(&browser, "confirmation", "blue tractor seven").await;
    press(&browser, "button[type=submit]").await;

    // Our page → the host's portal → our authorization endpoint (the session signs in at once) →
    // the host's callback, which redeemed the code and verified the ID token.
    wait_for_heading(&browser, "Signed in").await;
    assert_eq!(
        wait_for_id(&browser, "signed-in").await,
        "Signed in to Southside Auto Care's portal as Jana Kowalski (customer cus_456)"
    );
    let landed = browser.current_url().await.unwrap();
    assert_eq!(landed.path(), "/portal/oidc/callback");
    assert!(standin.base_url().starts_with(&landed.origin().ascii_serialization()), "{landed}");
    let page = browser.source().await.unwrap();
    assert!(page.contains("jana@example.com") && page.contains(&app.url), "the claims are shown: {page}");
    snapshot(&browser, "10-signed-in-to-the-hosts-portal").await;

    // Sign out at the host: the session here ends too, and the browser comes back to the host.
    press(&browser, "#sign-out").await;
    wait_for_heading(&browser, "Signed out").await;
    snapshot(&browser, "11-signed-out-of-the-hosts-portal").await;
    browser.goto(&format!("{}/p/shop_1", app.url)).await.unwrap();
    wait_for_heading(&browser, "Log in").await;

    browser.close().await.unwrap();
    drop(driver);
    standin.stop().await;
}
