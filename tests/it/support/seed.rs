//! The emulators with a proxy in front of each ([`Emulators`]), SDK clients on them, and the
//! helpers that seed streams, delivery streams, keys, the ledger table and events.

use super::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The emulators, a proxy in front of each, and SDK clients for seeding and checking.
pub struct Emulators {
    /// moto server itself (seeding and checking that bypasses the proxies).
    pub moto_url: String,
    pub kinesis_proxy: Proxy,
    pub moto_proxy: Proxy,
    pub kinesis: aws_sdk_kinesis::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub kms: aws_sdk_kms::Client,
    _kinesis_mock: Process,
    _moto: Process,
}

pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .http_client(stream_encryption_enforcer::aws::clients::https_client())
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new(ACCOUNT, "test-secret", None, None, "tests"),
        ))
        .endpoint_url(endpoint)
        .build()
}

/// An SDK configuration acting in `account` and `region` of moto at `moto_url`, straight (not
/// through a proxy): the default credentials for [`ACCOUNT`], credentials from moto's STS
/// AssumeRole (which act in the role's account) for any other.
pub async fn sdk_config_in(moto_url: &str, account: &str, region: &str) -> aws_config::SdkConfig {
    let base = sdk_config(moto_url);
    let config = base
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()));
    if account == ACCOUNT {
        return config.build();
    }
    let creds = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/SeedAdmin"))
        .role_session_name("seed")
        .send()
        .await
        .expect("AssumeRole")
        .credentials
        .expect("credentials");
    config
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "seed",
            ),
        ))
        .build()
}

impl Emulators {
    pub async fn start(create: Duration, update: Duration) -> Self {
        let (kinesis_mock, kinesis_url) = start_kinesis_mock(create, update);
        let (moto, moto_url) = start_moto();
        let kinesis_proxy = Proxy::start(&kinesis_url).await;
        let moto_proxy = Proxy::start(&moto_url).await;
        // Seeding and checking go straight to the emulators, so the proxies count only the
        // enforcer's calls.
        Self {
            kinesis: aws_sdk_kinesis::Client::new(&sdk_config(&kinesis_url)),
            firehose: aws_sdk_firehose::Client::new(&sdk_config(&moto_url)),
            kms: aws_sdk_kms::Client::new(&sdk_config(&moto_url)),
            moto_url,
            kinesis_proxy,
            moto_proxy,
            _kinesis_mock: kinesis_mock,
            _moto: moto,
        }
    }

    /// The environment that points the enforcer's binaries at the proxies.
    pub fn env(&self, mandated_key: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_KINESIS", self.kinesis_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_FIREHOSE", self.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_KMS", self.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_STS", self.moto_proxy.url.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCOUNT),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("MANDATED_KMS_KEY", mandated_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A customer managed key in moto with `alias` (e.g. `alias/org-streams`); returns its ARN.
    pub async fn create_key(&self, alias: &str) -> String {
        create_key_on(&self.kms, alias).await
    }

    pub async fn create_stream(&self, name: &str) {
        create_stream_on(&self.kinesis, name).await;
    }

    pub async fn stream(&self, name: &str) -> aws_sdk_kinesis::types::StreamDescriptionSummary {
        stream_on(&self.kinesis, name).await
    }

    /// Waits until the stream is ACTIVE (kinesis-mock's own CREATING / UPDATING phases).
    pub async fn wait_active(&self, name: &str) {
        wait_active_on(&self.kinesis, name).await;
    }

    /// A DirectPut (or other source type) delivery stream: [`create_delivery_stream_on`].
    pub async fn create_delivery_stream(&self, name: &str, kinesis_source: Option<&str>) {
        create_delivery_stream_on(&self.firehose, ACCOUNT, name, kinesis_source).await;
    }

    pub async fn delivery_encryption(
        &self,
        name: &str,
    ) -> Option<aws_sdk_firehose::types::DeliveryStreamEncryptionConfiguration> {
        delivery_encryption_on(&self.firehose, name).await
    }

    /// Resolves any key reference to its key ARN in moto.
    pub async fn key_arn(&self, key: &str) -> String {
        self.kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .expect("DescribeKey")
            .key_metadata
            .and_then(|m| m.arn)
            .expect("arn")
    }
}

/// A DirectPut (or, with `kinesis_source`, Kinesis-fed) delivery stream in `account`, through
/// `firehose`. moto's DescribeDeliveryStream is only readable by the Rust SDK when the S3
/// destination sets these three fields.
pub async fn create_delivery_stream_on(
    firehose: &aws_sdk_firehose::Client,
    account: &str,
    name: &str,
    kinesis_source: Option<&str>,
) {
    use aws_sdk_firehose::types::*;
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn(format!("arn:aws:iam::{account}:role/FirehoseDelivery"))
        .bucket_arn("arn:aws:s3:::example-delivery-bucket")
        .compression_format(CompressionFormat::Uncompressed)
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(5)
                .interval_in_seconds(300)
                .build(),
        )
        .encryption_configuration(
            EncryptionConfiguration::builder()
                .no_encryption_config(NoEncryptionConfig::NoEncryption)
                .build(),
        )
        .build()
        .expect("destination");
    let mut request = firehose
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(destination);
    request = match kinesis_source {
        None => request.delivery_stream_type(DeliveryStreamType::DirectPut),
        Some(stream_arn) => request
            .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(
                KinesisStreamSourceConfiguration::builder()
                    .kinesis_stream_arn(stream_arn)
                    .role_arn(format!("arn:aws:iam::{account}:role/FirehoseSourceRead"))
                    .build()
                    .expect("source"),
            ),
    };
    request.send().await.expect("CreateDeliveryStream");
}

/// What DescribeStreamSummary says of `name`, through `kinesis` (any emulator or account).
pub async fn stream_on(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
) -> aws_sdk_kinesis::types::StreamDescriptionSummary {
    kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
}

/// A customer managed key with `alias`, through `kms` (any account and region); returns its ARN.
pub async fn create_key_on(kms: &aws_sdk_kms::Client, alias: &str) -> String {
    let key = kms.create_key().send().await.expect("CreateKey");
    let meta = key.key_metadata().expect("metadata");
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(meta.key_id())
        .send()
        .await
        .expect("CreateAlias");
    meta.arn().expect("arn").to_owned()
}

/// A delivery stream's encryption configuration, as DescribeDeliveryStream reports it.
pub async fn delivery_encryption_on(
    firehose: &aws_sdk_firehose::Client,
    name: &str,
) -> Option<aws_sdk_firehose::types::DeliveryStreamEncryptionConfiguration> {
    firehose
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .expect("DescribeDeliveryStream")
        .delivery_stream_description
        .expect("description")
        .delivery_stream_encryption_configuration
}

/// Puts a stream on `key` with StartStreamEncryption (seeding, straight at the emulator).
pub async fn encrypt_stream_on(kinesis: &aws_sdk_kinesis::Client, name: &str, key: &str) {
    kinesis
        .start_stream_encryption()
        .stream_name(name)
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id(key)
        .send()
        .await
        .expect("StartStreamEncryption");
}

/// Creates the queue `name` with `sqs` (a FIFO queue when the name ends in `.fifo`, as SQS
/// requires) and returns its URL.
pub async fn create_queue_on(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    request
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url")
}

/// Creates a one-shard stream with `kinesis`. kinesis-mock allows only a few streams CREATING at
/// once: a `LimitExceededException` waits its turn (for up to a minute).
pub async fn create_stream_on(kinesis: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..600 {
        match kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
        {
            Ok(_) => return,
            Err(e) if format!("{e:?}").contains("LimitExceeded") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CreateStream {name}: {e:?}"),
        }
    }
    panic!("CreateStream {name}: still limited after a minute");
}

/// Waits (up to 60 s) until `name` is ACTIVE.
pub async fn wait_active_on(kinesis: &aws_sdk_kinesis::Client, name: &str) {
    let start = Instant::now();
    loop {
        let status = stream_on(kinesis, name).await.stream_status;
        if status == aws_sdk_kinesis::types::StreamStatus::Active {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fixture from events/ with the stream name (and ARN where present) replaced.
pub fn event(fixture: &str, name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(format!("{fixture}.json"));
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    let detail = &mut event["detail"];
    let params = &mut detail["requestParameters"];
    if params.get("streamName").is_some() {
        params["streamName"] = name.into();
    }
    if params.get("streamARN").is_some() {
        params["streamARN"] = format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}").into();
    }
    if params.get("deliveryStreamName").is_some() {
        params["deliveryStreamName"] = name.into();
    }
    if detail["responseElements"]
        .get("deliveryStreamARN")
        .is_some()
    {
        detail["responseElements"]["deliveryStreamARN"] =
            format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}").into();
    }
    event
}

/// The re-application ledger's table, as template.yaml declares it (`resource` and `applied`,
/// on demand), named `table` in moto's DynamoDB at `moto_url`.
pub async fn create_ledger_table(moto_url: &str, table: &str) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(moto_url));
    let key = |name: &str, kind| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    dynamodb
        .create_table()
        .table_name(table)
        .key_schema(key("resource", aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(key("applied", aws_sdk_dynamodb::types::KeyType::Range))
        .attribute_definitions(attribute("resource"))
        .attribute_definitions(attribute("applied"))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
}
