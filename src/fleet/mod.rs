//! Organisation scale: one enforcer for many accounts and regions.
//!
//! The function acts in its own account and region (the ones its ARN names) with its own
//! credentials. In central mode (`TARGET_ROLE_NAME`) it also acts in the other accounts of
//! `ALLOWED_ACCOUNTS` / the organisation, and in the other regions of its own account, through
//! the role of that name in each account: credentials come from sts:AssumeRole, are cached per
//! account until shortly before they expire, and are shared by every region of the account.
//! Clients are built per account and region, once per container.
//!
//! Each account and region has its own `Enforcer`, so its own rate limiter (the API limits are
//! per account and region: one busy account never slows another) and its own resolution of the
//! mandated key (an alias or key id names a key in the account and region of the stream, as it
//! would for any caller there).
//!
//! An event from an account or region outside the allowed set is `refused` before any AWS call.

mod accounts;
mod cache;
mod scope;

use crate::aws::connector::{CannotAct, Connector};
use crate::config::{Central, Config};
pub use crate::enforce::{Carry, Deferral, Enforced};
use crate::enforce::{Enforcer, Rules};
use crate::fleet::accounts::AllowedAccounts;
use crate::model::event::{self, InvalidEvent, Parsed, Trigger};
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Location;
use crate::policy::retry::{self, CallError, RandomSource};
use crate::sync::lock;
use cache::FifoCache;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The enforcers of every account and region the function acts in, built on first use.
pub struct Fleet<C: Connector> {
    connector: C,
    config: Config,
    /// The enforcers kept between events, at most [`CACHED_PLACES`].
    enforcers: Mutex<FifoCache<Location, Arc<Enforcer<C::Aws>>>>,
    /// The accounts other than its own the function may act in.
    accounts: AllowedAccounts,
    /// What every place's enforcer reads from the configuration.
    rules: Arc<Rules>,
    /// The mandated key as the cold-start check resolved it in the function's own region
    /// ([`crate::aws::kms::check_mandated_key_arn`]): the enforcer of the function's own place starts
    /// with it instead of resolving the key a second time.
    home_key: Option<(String, crate::model::key::KeyInfo)>,
}

/// The most accounts and regions whose enforcer (SDK clients, rate limiter, resolved key) a
/// container keeps between events: it bounds their memory within the function's 128 MB,
/// whatever the organisation's size (docs/performance.md has the cost per place).
pub const CACHED_PLACES: usize = 256;

impl<C: Connector> Fleet<C> {
    /// A fleet with `config`, reaching accounts and regions through `connector`.
    pub fn new(connector: C, config: &Config) -> Self {
        Self {
            connector,
            config: config.clone(),
            enforcers: Mutex::new(FifoCache::new(CACHED_PLACES)),
            accounts: AllowedAccounts::new(config.central.as_ref()),
            rules: Arc::new(Rules::new(config)),
            home_key: None,
        }
    }

    /// The fleet whose enforcer in the function's own account and `region` starts with `key`,
    /// the mandated key already resolved there.
    pub fn with_home_key(mut self, region: &str, key: Option<crate::model::key::KeyInfo>) -> Self {
        self.home_key = key.map(|key| (region.to_owned(), key));
        self
    }

    /// In central mode with `ORGANIZATION_ID` and no `ALLOWED_ACCOUNTS`: reads the
    /// organisation's ACTIVE accounts when they were never read or were read more than
    /// `ORGANIZATION_REFRESH` (10 minutes) ago. Otherwise
    /// nothing.
    pub async fn refresh_accounts(
        &self,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<(), CannotAct> {
        self.accounts
            .refresh(
                self.config.central.as_ref(),
                &self.config.retry_policy,
                &self.connector,
                deadline,
                random,
            )
            .await
    }

    /// The accounts other than its own the function may act in, as last read.
    pub(crate) fn allowed(&self) -> Option<Arc<std::collections::BTreeSet<String>>> {
        self.accounts.current()
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why a resource at `at` is not the function's to act on, or `None` when it is. Makes no
    /// call: own account and region only, or in central mode the allowed accounts and regions.
    pub fn refusal(&self, at: &Location, home: Option<&Location>) -> Option<String> {
        crate::fleet::scope::refusal(
            self.config.central.as_ref(),
            self.allowed().as_deref(),
            at,
            home,
        )
    }

    /// Handles one event: parse, refuse what is outside the allowed accounts and regions, reach
    /// the resource's account and region, enforce. `Err` only for an event that cannot be used.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        home: Option<&Location>,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<Report, InvalidEvent> {
        let handled = Box::pin(self.handle_with(event, home, deadline, random, Deferral::Off));
        Ok(match handled.await? {
            Enforced::Done(report) => report,
            // Without deferral the enforcer waits; reported, never lost, should that change.
            Enforced::Later { after, .. } => Report {
                reason: Some(format!(
                    "deferred by {}s without a way to come back",
                    after.as_secs()
                )),
                ..Report::new(Outcome::Failed)
            },
        })
    }

    /// As [`Self::handle`]; with [`Deferral::On`], a wait for the resource is handed back as
    /// [`Enforced::Later`] (the events queue's handling, `src/lambda/events.rs`).
    pub async fn handle_with(
        &self,
        event: serde_json::Value,
        home: Option<&Location>,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
        deferral: Deferral,
    ) -> Result<Enforced, InvalidEvent> {
        let trigger = match event::parse(event)? {
            Parsed::Ignored {
                event_id,
                service,
                event_name,
                reason,
            } => {
                return Ok(Enforced::Done(Report::ignored(
                    event_id, service, event_name, reason,
                )));
            }
            Parsed::Trigger(trigger) => trigger,
        };
        let at = &trigger.resource.location;
        // Only another account's event needs the organisation's accounts: the function's own
        // account is always its to act on, so its events never wait on or fail with that read.
        let elsewhere = home.is_some_and(|home| home.account != at.account);
        if elsewhere && let Err(why) = self.refresh_accounts(deadline, random).await {
            return Ok(Enforced::Done(self.cannot_act(&trigger, why)));
        }
        let home = match (self.refusal(at, home), home) {
            (None, Some(home)) => home,
            (reason, _) => {
                return Ok(Enforced::Done(Report::refused(
                    &trigger,
                    reason.unwrap_or_default(),
                )));
            }
        };
        Ok(
            match self.enforcer_at(at, home, true, deadline, random).await {
                Ok(enforcer) => {
                    Box::pin(enforcer.enforce_with(&trigger, deadline, random, deferral)).await
                }
                Err(why) => Enforced::Done(self.cannot_act(&trigger, why)),
            },
        )
    }

    /// The enforcer for `at`, after making sure its account's credentials are at hand.
    /// `keep`: cache the enforcer for later events (a sweep's are used once and dropped).
    pub(crate) async fn enforcer_at(
        &self,
        at: &Location,
        home: &Location,
        keep: bool,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<Arc<Enforcer<C::Aws>>, CannotAct> {
        // Only the function's own account and region use its own credentials (and the
        // permissions of its own stack); every other place goes through the member role, which
        // the member stack creates in every account, the function's own included.
        let own = at == home;
        // Keys are regional: a place without a mandated key of its own region gets no call.
        let key = self
            .config
            .mandated_key_at(at)
            .map_err(|reason| CannotAct {
                code: crate::model::key::KEY_IN_OTHER_REGION.to_owned(),
                reason,
            })?;
        if !own {
            let assumed = retry::run(
                &self.config.retry_policy,
                deadline,
                random,
                "sts:AssumeRole",
                || self.connector.assume(at),
            )
            .await;
            if let Err(e) = assumed {
                return Err(self.assume_failed(at, &e));
            }
        }
        if let Some(enforcer) = lock(&self.enforcers).get(at) {
            return Ok(enforcer);
        }
        let aws = self.connector.connect(at, own).map_err(|e| CannotAct {
            code: e.code().to_owned(),
            reason: format!("no clients for {at}: {e}"),
        })?;
        let enforcer = Arc::new(
            Enforcer::new(aws, self.rules.clone(), key).with_resolution(
                self.home_key
                    .as_ref()
                    .filter(|(region, _)| own && *region == at.region)
                    .map(|(_, key)| key.clone()),
            ),
        );
        if !keep {
            return Ok(enforcer);
        }
        // Oldest first out: a place that had an event long ago rebuilds its clients (and
        // resolves its key again) when the next one comes.
        Ok(lock(&self.enforcers).get_or_insert(at.clone(), enforcer))
    }

    fn assume_failed(&self, at: &Location, e: &CallError) -> CannotAct {
        let role = self
            .config
            .central
            .as_ref()
            .map_or_else(String::new, |c: &Central| {
                c.role_arn(&at.partition, &at.account)
            });
        CannotAct {
            code: e.aws().code().to_owned(),
            reason: format!(
                "sts:AssumeRole of {role} failed: {e}; the member stack must be deployed in \
                 account {} and its role must trust this function",
                at.account
            ),
        }
    }

    fn cannot_act(&self, trigger: &Trigger, why: CannotAct) -> Report {
        Report {
            key: Some(self.config.mandated_key.configured().to_owned()),
            reason: Some(why.reason),
            error_code: Some(why.code),
            ..Report::about(trigger, Outcome::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::SdkAws;
    use crate::aws::connector::Organization;
    use crate::aws::error::AwsError;
    use crate::fleet::accounts::ORGANIZATION_REFRESH;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Duration;

    const KEY: (&str, &str) = ("MANDATED_KMS_KEY", "alias/org-streams");

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            vars.iter()
                .chain(&[KEY])
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    /// A connector whose every AssumeRole is denied; it is never asked for clients, since
    /// nothing may be called without the role. Its organisation is o-a1b2c3d4e5 with
    /// 111111111111 and 222222222222.
    #[derive(Default)]
    struct Denied {
        assume_calls: AtomicUsize,
        org_reads: AtomicUsize,
        /// Organizations answers AccessDenied.
        org_denied: AtomicBool,
    }

    impl Denied {
        fn assume_calls(&self) -> usize {
            self.assume_calls.load(SeqCst)
        }

        fn org_reads(&self) -> usize {
            self.org_reads.load(SeqCst)
        }

        fn deny_org(&self) {
            self.org_denied.store(true, SeqCst);
        }
    }

    impl Connector for Denied {
        type Aws = SdkAws;

        fn connect(&self, at: &Location, _: bool) -> Result<SdkAws, AwsError> {
            Err(AwsError::new("Unexpected", format!("connect {at}")))
        }

        async fn assume(&self, _: &Location) -> Result<(), AwsError> {
            self.assume_calls.fetch_add(1, SeqCst);
            Err(AwsError::new("AccessDenied", "not authorized to assume"))
        }

        async fn organization(&self) -> Result<Organization, AwsError> {
            self.org_reads.fetch_add(1, SeqCst);
            if self.org_denied.load(SeqCst) {
                return Err(AwsError::new(
                    "AccessDeniedException",
                    "not a delegated admin",
                ));
            }
            Ok(Organization {
                id: "o-a1b2c3d4e5".into(),
                accounts: ["111111111111", "222222222222", "123456789012"]
                    .map(String::from)
                    .into(),
            })
        }
    }

    fn at(account: &str, region: &str) -> Location {
        Location::new(account, region).unwrap()
    }

    fn central() -> Fleet<Denied> {
        Fleet::new(
            Denied::default(),
            &config(&[
                ("TARGET_ROLE_NAME", "Member"),
                ("ALLOWED_ACCOUNTS", "111111111111,222222222222"),
                ("ALLOWED_REGIONS", "us-east-1,eu-west-1"),
            ]),
        )
    }

    #[test]
    fn the_allowed_set_decides_without_a_call() {
        let home = at("123456789012", "us-east-1");
        let fleet = central();
        assert_eq!(
            fleet.refusal(&at("111111111111", "eu-west-1"), Some(&home)),
            None
        );
        // The function's own account is always allowed, in the allowed regions.
        assert_eq!(
            fleet.refusal(&at("123456789012", "eu-west-1"), Some(&home)),
            None
        );
        let refused = |account, region| {
            fleet
                .refusal(&at(account, region), Some(&home))
                .unwrap_or_default()
        };
        assert!(refused("333333333333", "us-east-1").contains("not in ALLOWED_ACCOUNTS"));
        assert!(refused("111111111111", "ap-south-1").contains("not in ALLOWED_REGIONS"));
        assert!(refused("123456789012", "ap-south-1").contains("not in ALLOWED_REGIONS"));
        assert!(refused("111111111111", "cn-north-1").contains("partition"));
        assert!(
            fleet
                .refusal(&at("111111111111", "us-east-1"), None)
                .is_some()
        );
        assert_eq!(fleet.connector().assume_calls(), 0);

        // Without central mode only the function's own account and region.
        let single = Fleet::new(Denied::default(), &config(&[]));
        assert_eq!(single.refusal(&home, Some(&home)), None);
        assert!(
            single
                .refusal(&at("123456789012", "eu-west-1"), Some(&home))
                .is_some()
        );
        assert!(
            single
                .refusal(&at("111111111111", "us-east-1"), Some(&home))
                .is_some()
        );
    }

    #[test]
    fn a_sweep_covers_every_allowed_account_in_every_allowed_region() {
        let home = at("123456789012", "us-east-1");
        let names: Vec<String> = central()
            .sweep_locations(&home)
            .iter()
            .map(|l| format!("{}/{}", l.account, l.region))
            .collect();
        assert_eq!(
            names,
            [
                "123456789012/eu-west-1",
                "123456789012/us-east-1",
                "111111111111/eu-west-1",
                "111111111111/us-east-1",
                "222222222222/eu-west-1",
                "222222222222/us-east-1",
            ]
        );
        let single = Fleet::new(Denied::default(), &config(&[]));
        assert_eq!(single.sweep_locations(&home), vec![home.clone()]);
        let org_only = Fleet::new(
            Denied::default(),
            &config(&[
                ("TARGET_ROLE_NAME", "Member"),
                ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
                ("ALLOWED_REGIONS", "us-east-1"),
            ]),
        );
        assert_eq!(org_only.sweep_locations(&home), vec![home]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_denied_role_fails_the_event_with_its_code_and_makes_no_other_call() {
        let fleet = central();
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../../events/kinesis-create-stream.json")).unwrap();
        event["detail"]["recipientAccountId"] = "111111111111".into();
        event["account"] = "111111111111".into();
        let home = at("123456789012", "us-east-1");
        let report = fleet
            .handle(
                event,
                Some(&home),
                Instant::now() + Duration::from_secs(60),
                &mut fastrand::Rng::with_seed(1),
            )
            .await
            .unwrap();
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.error_code.as_deref(), Some("AccessDenied"));
        let reason = report.reason.unwrap();
        assert!(
            reason.contains("arn:aws:iam::111111111111:role/Member"),
            "{reason}"
        );
        // AccessDenied is not retried by the default policy.
        assert_eq!(fleet.connector().assume_calls(), 1);
    }

    const ORG_ONLY: [(&str, &str); 3] = [
        ("TARGET_ROLE_NAME", "Member"),
        ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
        ("ALLOWED_REGIONS", "us-east-1"),
    ];

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test(start_paused = true)]
    async fn without_allowed_accounts_the_organisation_is_read_once_and_decides() {
        let home = at("123456789012", "us-east-1");
        let fleet = Fleet::new(Denied::default(), &config(&ORG_ONLY));
        let member = at("222222222222", "us-east-1");
        // Not read yet: nothing but the function's own account can be acted on.
        assert!(fleet.refusal(&member, Some(&home)).is_some());
        let mut random = fastrand::Rng::with_seed(1);
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        assert_eq!(fleet.connector().org_reads(), 1);
        assert_eq!(fleet.refusal(&member, Some(&home)), None);
        let outsider = fleet
            .refusal(&at("333333333333", "us-east-1"), Some(&home))
            .unwrap();
        assert!(
            outsider.contains("not in the ACTIVE accounts of organisation o-a1b2c3d4e5"),
            "{outsider}"
        );
        assert_eq!(fleet.sweep_locations(&home).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_organisation_is_read_again_after_ten_minutes() {
        let fleet = Fleet::new(Denied::default(), &config(&ORG_ONLY));
        let mut random = fastrand::Rng::with_seed(1);
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        tokio::time::advance(ORGANIZATION_REFRESH).await;
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        assert_eq!(fleet.connector().org_reads(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reread_keeps_the_accounts_read_before() {
        let home = at("123456789012", "us-east-1");
        let member = at("222222222222", "us-east-1");
        let fleet = Fleet::new(Denied::default(), &config(&ORG_ONLY));
        let mut random = fastrand::Rng::with_seed(1);
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        fleet.connector().deny_org();
        tokio::time::advance(ORGANIZATION_REFRESH).await;
        fleet.refresh_accounts(soon(), &mut random).await.unwrap();
        assert_eq!(fleet.connector().org_reads(), 2);
        assert_eq!(fleet.refusal(&member, Some(&home)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_first_read_is_an_error_with_its_code() {
        let fleet = Fleet::new(Denied::default(), &config(&ORG_ONLY));
        fleet.connector().deny_org();
        let err = fleet
            .refresh_accounts(soon(), &mut fastrand::Rng::with_seed(1))
            .await
            .unwrap_err();
        assert_eq!(err.code, "AccessDeniedException");
        assert!(err.reason.contains("delegated administrator"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn another_organisation_than_the_configured_one_is_an_error() {
        let home = at("123456789012", "us-east-1");
        let vars = [
            ("TARGET_ROLE_NAME", "Member"),
            ("ORGANIZATION_ID", "o-zzzzzzzzzz"),
            ("ALLOWED_REGIONS", "us-east-1"),
        ];
        let fleet = Fleet::new(Denied::default(), &config(&vars));
        let err = fleet
            .refresh_accounts(soon(), &mut fastrand::Rng::with_seed(1))
            .await
            .unwrap_err();
        assert_eq!(err.code, "Enforcer.OrganizationMismatch");
        assert!(
            fleet
                .refusal(&at("222222222222", "us-east-1"), Some(&home))
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_allowed_accounts_the_organisation_is_not_read() {
        let fleet = central();
        fleet
            .refresh_accounts(soon(), &mut fastrand::Rng::with_seed(1))
            .await
            .unwrap();
        assert_eq!(fleet.connector().org_reads(), 0);
    }

    /// A connector that reaches every place, with SDK clients that are never called.
    struct Open;

    impl Connector for Open {
        type Aws = SdkAws;

        fn connect(&self, at: &Location, _: bool) -> Result<SdkAws, AwsError> {
            let config = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(at.region.clone()))
                .build();
            Ok(SdkAws::new(
                aws_sdk_kinesis::Client::new(&config),
                aws_sdk_firehose::Client::new(&config),
                aws_sdk_kms::Client::new(&config),
                None,
            ))
        }

        async fn assume(&self, _: &Location) -> Result<(), AwsError> {
            Ok(())
        }

        async fn organization(&self) -> Result<Organization, AwsError> {
            Err(AwsError::new("Unexpected", "not read in this test"))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_keeps_a_bounded_number_of_places_and_a_sweep_keeps_none() {
        let home = at("123456789012", "us-east-1");
        let fleet = Fleet::new(
            Open,
            &config(&[
                ("TARGET_ROLE_NAME", "Member"),
                ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
                ("ALLOWED_REGIONS", "us-east-1"),
            ]),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut random = fastrand::Rng::with_seed(1);
        let place = |i: usize| at(&format!("{:012}", 100_000_000_000 + i), "eu-west-1");
        let mut first = Vec::new();
        for i in 0..CACHED_PLACES + 44 {
            let kept = fleet
                .enforcer_at(&place(i), &home, true, deadline, &mut random)
                .await
                .unwrap();
            first.push(kept);
        }
        assert_eq!(lock(&fleet.enforcers).len(), CACHED_PLACES);
        // The newest places are kept (the same enforcer again), the oldest were let go.
        let newest = CACHED_PLACES + 43;
        let again = fleet
            .enforcer_at(&place(newest), &home, true, deadline, &mut random)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&again, &first[newest]));
        let again = fleet
            .enforcer_at(&place(0), &home, true, deadline, &mut random)
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&again, &first[0]));
        assert_eq!(lock(&fleet.enforcers).len(), CACHED_PLACES);
        // A sweep's places are used once and dropped.
        let swept = fleet
            .enforcer_at(&place(10_000), &home, false, deadline, &mut random)
            .await
            .unwrap();
        assert_eq!(Arc::strong_count(&swept), 1);
        assert!(lock(&fleet.enforcers).get(&place(10_000)).is_none());
    }
}
