//! ECS's list calls as AWS answers them, in front of moto, which answers each one whole and in the
//! order it stored things. After the ECS API reference:
//! - Every list call is paged: `maxResults` (1 to 100, else `InvalidParameterException`) items a
//!   page, and a `nextToken` while more remain, to be sent back unchanged with the same filters.
//!   Without `maxResults`: 10 for `ListServices` ("ListServices", "maxResults ... If this parameter
//!   isn't used, then ListServices returns up to 10 results"), 20 for `ListServiceDeployments`,
//!   100 for `ListClusters`, `ListTasks`, `ListTaskDefinitions` and `ListTaskDefinitionFamilies`.
//! - `ListTaskDefinitions` ("sort"): "By default, (ASC) task definitions are listed
//!   lexicographically by family name and in ascending numerical order by revision so that the
//!   newest task definitions in a family are listed last. Setting this parameter to DESC reverses
//!   the sort order on family name and revision." Nothing orders them by when they were
//!   registered. `familyPrefix` there is "the full family name" (moto does that).
//! - `ListTaskDefinitionFamilies`: families whose names begin with `familyPrefix` (moto does that),
//!   in name order.
//! - `DescribeServices` takes at most 10 services, `DescribeTasks` at most 100, and
//!   `DescribeServiceDeployments` and `DescribeServiceRevisions` at most 20 ARNs ("You can specify
//!   a maximum of 20 ARNs"), `InvalidParameterException` beyond.

use serde_json::{Value, json};

/// An ECS error answer: status and body.
pub type Refused = (u16, Value);

pub fn invalid(message: &str) -> Refused {
    (400, json!({ "__type": "InvalidParameterException", "message": message }))
}

/// The list field and (default, maximum) page size of each paged ECS call.
pub fn paged(operation: &str) -> Option<(&'static str, usize)> {
    Some(match operation {
        "ListClusters" => ("clusterArns", 100),
        "ListServices" => ("serviceArns", 10),
        "ListTasks" => ("taskArns", 100),
        "ListTaskDefinitions" => ("taskDefinitionArns", 100),
        "ListTaskDefinitionFamilies" => ("families", 100),
        "ListServiceDeployments" => ("serviceDeployments", 20),
        _ => return None,
    })
}

/// Puts `items` in the order AWS lists them for `operation`.
pub fn order(operation: &str, input: &Value, items: &mut [Value]) {
    match operation {
        "ListTaskDefinitionFamilies" => items.sort_by(|a, b| a.as_str().cmp(&b.as_str())),
        "ListTaskDefinitions" => {
            let key = |arn: &Value| {
                let name = arn.as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned();
                let (family, revision) = name.rsplit_once(':').unwrap_or((&name, "0"));
                (family.to_owned(), revision.parse::<u64>().unwrap_or(0))
            };
            items.sort_by_key(key);
            if input["sort"].as_str() == Some("DESC") {
                items.reverse();
            }
        }
        _ => {}
    }
}

/// One page of `items` for a request with `input`'s `maxResults` and `nextToken`, and the token
/// for the next page, if any.
pub fn page(items: Vec<Value>, input: &Value, default: usize) -> Result<(Vec<Value>, Option<String>), Refused> {
    let size = match &input["maxResults"] {
        Value::Null => default,
        value => match value.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => return Err(invalid("maxResults must be between 1 and 100")),
        },
    };
    let start = match input["nextToken"].as_str() {
        None => 0,
        Some(token) => match token.strip_prefix("testbed-page-").and_then(|n| n.parse::<usize>().ok()) {
            Some(start) if start <= items.len() => start,
            _ => return Err(invalid("Invalid token")),
        },
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("testbed-page-{end}"));
    Ok((items[start..end].to_vec(), next))
}

/// Refuses a Describe call that names more than AWS takes at once.
pub fn within_limits(operation: &str, input: &Value) -> Result<(), Refused> {
    let (field, limit) = match operation {
        "DescribeServices" => ("services", 10),
        "DescribeTasks" => ("tasks", 100),
        "DescribeServiceDeployments" => ("serviceDeploymentArns", 20),
        "DescribeServiceRevisions" => ("serviceRevisionArns", 20),
        _ => return Ok(()),
    };
    let count = input[field].as_array().map_or(0, Vec::len);
    if count > limit {
        return Err(invalid(&format!("{field} can have at most {limit} items")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_to_the_end() {
        let items: Vec<Value> = (0..25).map(|n| json!(n)).collect();
        let (first, token) = page(items.clone(), &json!({}), 10).unwrap();
        assert_eq!(first.len(), 10);
        let (second, token) = page(items.clone(), &json!({ "nextToken": token }), 10).unwrap();
        assert_eq!(second[0], json!(10));
        let (last, token) = page(items.clone(), &json!({ "nextToken": token, "maxResults": 100 }), 10).unwrap();
        assert_eq!((last.len(), token), (5, None));
        assert!(page(items.clone(), &json!({ "maxResults": 101 }), 10).is_err());
        assert!(page(items, &json!({ "nextToken": "forged" }), 10).is_err());
    }

    #[test]
    fn task_definitions_in_name_and_revision_order() {
        let arn = |name: &str| json!(format!("arn:aws:ecs:eu-west-1:1:task-definition/{name}"));
        let mut items = vec![arn("web:10"), arn("api:2"), arn("web:9"), arn("api:1")];
        order("ListTaskDefinitions", &json!({ "sort": "DESC" }), &mut items);
        assert_eq!(items, [arn("web:10"), arn("web:9"), arn("api:2"), arn("api:1")]);
    }
}
