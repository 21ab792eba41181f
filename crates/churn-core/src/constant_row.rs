//! An optimizer rule for the idiom the feature files (`pipelines/features/`) and the report's
//! mart files (`churn-report/sql/`) use to read the as-of date: `from transactions t cross join
//! params p`, where `params` is one row of constants (`select as_of_day from snapshot`). DataFusion keeps that a join; a filter on both sides
//! (`where p.as_of_day - t.day <= 365`) then becomes a nested-loop join's filter, which no scan
//! sees, so every partition is read and every row goes through the join. On a 1M-customer store
//! that made `rfm.sql`'s 365-day category count 9 s of its 14 s.
//!
//! The rule replaces such a join with a projection that adds the constants to each row of the
//! other side, and any join filter with a filter above it. The join had exactly one row on the
//! constant side, so the rows are the same; the constants then fold into the filter, which is
//! pushed into the scan and prunes its date partitions.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{
    EmptyRelation, Expr, Filter, Join, JoinType, LogicalPlan, Projection,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Inlines an inner join without keys whose one side is a single row of constants.
#[derive(Debug, Default)]
pub struct InlineConstantRow;

impl OptimizerRule for InlineConstantRow {
    fn name(&self) -> &str {
        "churn_inline_constant_row"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if join.join_type != JoinType::Inner || !join.on.is_empty() {
            return Ok(Transformed::no(plan));
        }
        let left_width = join.left.schema().fields().len();
        let (constants, other, constants_first) =
            match (constant_row(&join.left), constant_row(&join.right)) {
                (Some(row), _) => (row, join.right.clone(), true),
                (None, Some(row)) => (row, join.left.clone(), false),
                (None, None) => return Ok(Transformed::no(plan)),
            };
        let expressions = projected_row(join, &constants, left_width, constants_first);
        let projected = LogicalPlan::Projection(Projection::try_new_with_schema(
            expressions,
            other,
            join.schema.clone(),
        )?);
        Ok(Transformed::yes(match &join.filter {
            None => projected,
            Some(predicate) => {
                LogicalPlan::Filter(Filter::try_new(predicate.clone(), Arc::new(projected))?)
            }
        }))
    }
}

/// The join's output row as expressions over the non-constant side: its columns as they are,
/// the constant side's columns as the constants, in the join schema's order and names.
fn projected_row(
    join: &Join,
    constants: &[Expr],
    left_width: usize,
    constants_first: bool,
) -> Vec<Expr> {
    join.schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let constant_index = match (constants_first, i < left_width) {
                (true, true) => Some(i),
                (false, false) => Some(i - left_width),
                _ => None,
            };
            match constant_index {
                Some(j) => constants[j]
                    .clone()
                    .unalias()
                    .alias_qualified(qualifier.cloned(), field.name()),
                None => Expr::Column(Column::new(qualifier.cloned(), field.name())),
            }
        })
        .collect()
}

/// The expressions of `plan` when it is exactly one row of constants: a projection of
/// deterministic expressions that read no column and no subquery, over the one-row empty
/// relation of a `SELECT` without `FROM`, under any aliases.
fn constant_row(plan: &LogicalPlan) -> Option<Vec<Expr>> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => constant_row(&alias.input),
        LogicalPlan::Projection(projection) => {
            let one_row = matches!(
                projection.input.as_ref(),
                LogicalPlan::EmptyRelation(EmptyRelation {
                    produce_one_row: true,
                    ..
                })
            );
            (one_row && projection.expr.iter().all(is_constant)).then(|| projection.expr.clone())
        }
        _ => None,
    }
}

/// Whether `expr` has the same value on every row: no column, no subquery, nothing volatile.
fn is_constant(expr: &Expr) -> bool {
    !expr.is_volatile()
        && !expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::Column(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::Placeholder(_)
                ))
            })
            .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A session with `t(x)` = 1..=10 and the rule, or without it.
    fn session(with_rule: bool) -> SessionContext {
        let mut state = datafusion::execution::SessionStateBuilder::new().with_default_features();
        if with_rule {
            state = state.with_optimizer_rules(crate::session::optimizer_rules());
        }
        let ctx = SessionContext::new_with_state(state.build());
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from_iter_values(1..=10)) as _,
        )])
        .unwrap();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx
    }

    async fn column_and_plan(ctx: &SessionContext, sql: &str) -> (Vec<i64>, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let mut values: Vec<i64> = df
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        values.sort();
        (values, shown)
    }

    const WINDOW: &str = "with snapshot as (select cast(12 as bigint) as as_of_day, 'x' as label), \
        params as (select as_of_day from snapshot) \
        select t.x + p.as_of_day as shifted from t cross join params p where p.as_of_day - t.x <= 4";

    #[tokio::test]
    async fn a_filter_against_a_row_of_constants_becomes_a_plain_filter_with_the_same_rows() {
        let (with_rule, plan) = column_and_plan(&session(true), WINDOW).await;
        // 12 - x <= 4 for x in 8..=10, shifted by 12, worked out by hand.
        assert_eq!(with_rule, vec![20, 21, 22]);
        assert!(!plan.contains("Join"), "{plan}");
        let (without_rule, plan) = column_and_plan(&session(false), WINDOW).await;
        assert_eq!(without_rule, with_rule);
        assert!(plan.contains("NestedLoopJoinExec"), "{plan}");
    }

    #[tokio::test]
    async fn the_constants_may_be_on_either_side_and_the_join_keeps_its_column_order() {
        let sql = "select * from (select 100 as k) c cross join t where t.x > 8";
        let batches = session(true)
            .sql(sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let names: Vec<String> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["k", "x"]);
        let rows: Vec<(i64, i64)> = batches
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_primitive::<Int64Type>().values().to_vec();
                let x = b.column(1).as_primitive::<Int64Type>().values().to_vec();
                k.into_iter().zip(x)
            })
            .collect();
        assert_eq!(rows, vec![(100, 9), (100, 10)]);
    }

    #[tokio::test]
    async fn a_side_that_is_not_exactly_one_row_of_constants_stays_a_join() {
        for sql in [
            // Two rows.
            "select t.x from t cross join (select 1 as k union all select 2 as k) p where t.x < p.k",
            // Volatile: one value per row would differ from one value for the query.
            "select t.x from t cross join (select random() as k) p where t.x < p.k * 0",
            // Reads a table.
            "select t.x from t cross join (select max(x) as k from t) p where t.x < p.k - 8",
        ] {
            let (rows, plan) = column_and_plan(&session(true), sql).await;
            assert!(plan.contains("Join"), "{sql}: {plan}");
            let (without_rule, _) = column_and_plan(&session(false), sql).await;
            assert_eq!(rows, without_rule, "{sql}");
        }
    }
}
