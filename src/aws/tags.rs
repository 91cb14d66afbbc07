//! The paging both services' ListTags calls share.

use crate::aws::error::{AwsError, transport};
use crate::model::exemption::Tags;

/// Every page of a ListTags call that pages by `ExclusiveStartTagKey` and `HasMoreTags`
/// (`ListTagsForStream`, `ListTagsForDeliveryStream`): `page(after)` makes one call and answers
/// its tags and whether more follow; the next page starts after the last key read. A page with
/// no tags that says more follow is an error (`Enforcer.ResponseError`): asking again from the
/// same key would get the same answer for ever, and stopping there could miss the exemption tag
/// and write to a stream its owner exempted.
pub(crate) async fn every_tag_page<Fut>(
    mut page: impl FnMut(Option<String>) -> Fut,
) -> Result<Tags, AwsError>
where
    Fut: std::future::Future<Output = Result<(Tags, bool), AwsError>>,
{
    let mut tags = Tags::new();
    let mut after: Option<String> = None;
    loop {
        let (more_tags, more) = page(after.take()).await?;
        if more_tags.is_empty() && more {
            return Err(AwsError::new(
                transport::RESPONSE_ERROR,
                "ListTags answered a page with no tags that says more follow",
            ));
        }
        tags.extend(more_tags);
        match tags.last() {
            Some((last, _)) if more => after = Some(last.clone()),
            _ => return Ok(tags),
        }
    }
}
