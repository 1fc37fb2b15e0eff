{{ config(tags=['foundation']) }}

select
    level_id,
    name,
    description,
    min_compensation,
    max_compensation,
    comp_base_salary,
    avg_annual_merit_increase,
    promotion_probability,
    target_bonus_percent,
    target_distribution
from {{ ref('config_job_levels') }}
