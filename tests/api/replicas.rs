//! Two gateways sharing one Redis (a single server, and a 3-master Cluster), as replicas behind
//! a load balancer: what one issues the other validates, superseding and quotas hold across
//! them, and two right answers on two replicas give exactly one 204. Real `redis-server`
//! processes on free loopback ports; each gateway has its own embedded SMSC simulator.

use otp_gateway::config::{Settings, StoreBackend};
use otp_gateway::domain::Secret;
use otp_gateway::store::redis::testkit::{RedisCluster, RedisServer};

use crate::helpers::*;

fn on_redis(url: Option<String>, cluster: Vec<String>) -> impl Fn(&mut Settings) + Clone {
    move |s: &mut Settings| {
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = url.clone().map(Secret::new);
        s.store.redis_cluster_urls = cluster.iter().map(|u| Secret::new(u.as_str())).collect();
        s.store.redis_timeout = std::time::Duration::from_secs(2);
        s.otp.max_codes_per_number = 3;
    }
}

async fn replicas(setup: impl Fn(&mut Settings) + Clone) -> (TestApp, TestApp) {
    (
        spawn_app_with(setup.clone()).await,
        spawn_app_with(setup).await,
    )
}

async fn what_one_replica_issues_the_other_validates_once(a: &TestApp, b: &TestApp, phone: &str) {
    let (id, code) = a.issue(phone).await;
    assert_eq!(b.validate(&id, &code).await.status, 204);
    a.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
}

async fn the_quota_holds_across_replicas(a: &TestApp, b: &TestApp, phone: &str) {
    assert_eq!(a.send_code(phone).await.status, 200);
    assert_eq!(b.send_code(phone).await.status, 200);
    assert_eq!(a.send_code(phone).await.status, 200);
    b.send_code(phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
}

#[actix_web::test]
async fn replicas_on_one_redis_share_codes_superseding_quotas_and_single_use() {
    let redis = RedisServer::start().unwrap();
    let (a, b) = replicas(on_redis(Some(redis.url()), Vec::new())).await;

    what_one_replica_issues_the_other_validates_once(&a, &b, "+34600000901").await;

    // A newer code issued on B supersedes the one A issued for the same client and number.
    let (old, old_code) = a.issue("+34600000902").await;
    let (new, new_code) = b.issue("+34600000902").await;
    a.validate(&old, &old_code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    assert_eq!(a.validate(&new, &new_code).await.status, 204);

    // Two right answers at once, one on each replica: exactly one 204.
    let (id, code) = a.issue("+34600000903").await;
    let (ra, rb) = tokio::join!(a.validate(&id, &code), b.validate(&id, &code));
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400]);

    the_quota_holds_across_replicas(&a, &b, "+34600000904").await;

    // Wrong answers spent on A count on B: the third one locks the id everywhere.
    let (id, code) = a.issue("+34600000905").await;
    let wrong = wrong_code(&code);
    a.validate(&id, &wrong)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    b.validate(&id, &wrong)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    a.validate(&id, &wrong)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
    b.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
}

#[actix_web::test]
async fn replicas_on_a_redis_cluster_share_codes_and_quotas() {
    let cluster = RedisCluster::start(3, 0).unwrap();
    let (a, b) = replicas(on_redis(None, cluster.urls())).await;
    // Numbers in different buckets land on different masters; each works across replicas.
    for n in 0..6 {
        what_one_replica_issues_the_other_validates_once(&a, &b, &format!("+3460000091{n}")).await;
    }
    the_quota_holds_across_replicas(&a, &b, "+34600000920").await;
}

#[actix_web::test]
async fn a_redis_that_is_down_makes_send_code_unavailable_and_the_replica_not_ready() {
    let mut redis = RedisServer::start().unwrap();
    let a = spawn_app_with(on_redis(Some(redis.url()), Vec::new())).await;
    assert_eq!(a.send_code("+34600000930").await.status, 200);
    redis.kill();
    a.send_code("+34600000931")
        .await
        .assert_error(503, "UNAVAILABLE");
    let ready = a
        .request(awc::http::Method::GET, &format!("{}/health/ready", a.admin))
        .await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["store"], false);
    assert!(
        a.sim.messages_for("+34600000931").is_empty(),
        "no SMS without a stored challenge"
    );
}

/// Whether the replica's barring lookup at `url` says `blocked` within 3 s.
async fn barred_within_3s(app: &TestApp, url: &str, blocked: bool) -> bool {
    for _ in 0..30 {
        if app.request(awc::http::Method::GET, url).await.json()["blocked"] == blocked {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Issue 13 item 1: a number barred through one replica's admin API is barred on the other
/// within `policy.blocked_numbers_reload`, and lifting it is shared the same way.
#[actix_web::test]
async fn an_admin_barring_made_on_one_replica_holds_on_the_other() {
    let redis = RedisServer::start().unwrap();
    let base = on_redis(Some(redis.url()), Vec::new());
    let setup = move |s: &mut Settings| {
        base(s);
        s.policy.blocked_numbers_reload = std::time::Duration::from_secs(1);
    };
    let (a, b) = replicas(setup).await;
    let phone = "+34600000951";
    let url = format!("{}/admin/v1/blocked-numbers/{phone}", a.admin);
    assert_eq!(a.request(awc::http::Method::PUT, &url).await.status, 201);
    a.send_code(phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    // Polled through B's lookup, so no send counts against the number's quota meanwhile.
    let on_b = format!("{}/admin/v1/blocked-numbers/{phone}", b.admin);
    assert!(
        barred_within_3s(&b, &on_b, true).await,
        "B applies A's barring"
    );
    b.send_code(phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");

    assert_eq!(
        b.request(awc::http::Method::DELETE, &on_b).await.status,
        204
    );
    assert!(
        barred_within_3s(&a, &url, false).await,
        "A applies B's lifting"
    );
    assert_eq!(a.send_code(phone).await.status, 200);
}
