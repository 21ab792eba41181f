-- Segment migration: where the customers of the previous segmented date went by D.
-- grain: one row per dimension and pair of codes (dimension, from_code, to_code); empty without segments of D and of an earlier date
-- columns:
--   from_as_of: the latest date before D with segments
--   to_as_of: D
--   dimension: rfm_segment or lifecycle_stage
--   from_code: the code on from_as_of; null for customers who entered the population since
--   from_label: its label
--   to_code: the code on D; null for customers who left the population
--   to_label: its label
--   customers: customers who moved from from_code to to_code
with
params as (
    select as_of from snapshot
),

previous as (
    select max(s.as_of) as from_as_of
    from segments s
    cross join params p
    where s.as_of < p.as_of
),

before_rows as (
    select s.customer_id, s.rfm_segment, s.rfm_segment_label, s.lifecycle_stage, s.lifecycle_label
    from segments s
    join previous v on s.as_of = v.from_as_of
),

after_rows as (
    select s.customer_id, s.rfm_segment, s.rfm_segment_label, s.lifecycle_stage, s.lifecycle_label
    from segments s
    cross join params p
    where s.as_of = p.as_of
),

after_size as (
    select count(*) as customers from after_rows
),

pairs as (
    select
        b.rfm_segment as from_rfm, b.rfm_segment_label as from_rfm_label,
        a.rfm_segment as to_rfm, a.rfm_segment_label as to_rfm_label,
        b.lifecycle_stage as from_stage, b.lifecycle_label as from_stage_label,
        a.lifecycle_stage as to_stage, a.lifecycle_label as to_stage_label
    from before_rows b
    full outer join after_rows a on a.customer_id = b.customer_id
),

long_rows as (
    select 'rfm_segment' as dimension, from_rfm as from_code, from_rfm_label as from_label,
           to_rfm as to_code, to_rfm_label as to_label
    from pairs
    union all
    select 'lifecycle_stage', from_stage, from_stage_label, to_stage, to_stage_label
    from pairs
),

final as (
    select
        v.from_as_of,
        p.as_of as to_as_of,
        cast(l.dimension as varchar) as dimension,
        cast(l.from_code as varchar) as from_code,
        cast(max(l.from_label) as varchar) as from_label,
        cast(l.to_code as varchar) as to_code,
        cast(max(l.to_label) as varchar) as to_label,
        cast(count(*) as bigint) as customers
    from long_rows l
    cross join previous v
    cross join params p
    cross join after_size z
    where v.from_as_of is not null and z.customers > 0
    group by v.from_as_of, p.as_of, l.dimension, l.from_code, l.to_code
)

select * from final
