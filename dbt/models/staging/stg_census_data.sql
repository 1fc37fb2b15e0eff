{{ config(tags=['foundation']) }}

{#- One row per employee: duplicate ids resolved to the most recent hire (the
    others are listed by stg_census_duplicates_audit), plan-year pay grossed up
    to a full year over var('plan_year'), capped at var('irs_compensation_limit'),
    plan entry after var('eligibility_waiting_period_days'). -#}
with latest_records as (
    select *
    from ({{ census_records_ranked() }}) as ranked
    where record_rank = 1
),

plan_year as (
    select
        make_date({{ var('plan_year') }}, 1, 1) as plan_year_start,
        make_date({{ var('plan_year') }}, 12, 31) as plan_year_end
),

employment as (
    select
        r.*,
        p.plan_year_end - p.plan_year_start + 1 as days_in_plan_year,
        least(coalesce(r.employee_termination_date, p.plan_year_end), p.plan_year_end)
            - greatest(r.employee_hire_date, p.plan_year_start) + 1 as days_employed_in_plan_year
    from latest_records as r
    cross join plan_year as p
)

select
    employee_id,
    employee_ssn,
    employee_birth_date,
    employee_hire_date,
    employee_termination_date,
    employee_gross_compensation,
    active,
    employee_plan_year_compensation,
    -- Partial-year workers are grossed up to a full year; with no days
    -- employed in the plan year (or no plan-year pay) the annual rate stands.
    cast(case
        when employee_plan_year_compensation is null or days_employed_in_plan_year <= 0
            then employee_gross_compensation
        when days_employed_in_plan_year >= days_in_plan_year
            then employee_plan_year_compensation
        else round(employee_plan_year_compensation * days_in_plan_year / days_employed_in_plan_year, 2)
    end as double) as employee_annualized_compensation,
    cast(least(employee_plan_year_compensation, {{ var('irs_compensation_limit') }}) as double)
        as employee_capped_compensation,
    employee_deferral_rate,
    employee_contribution,
    pre_tax_contribution,
    roth_contribution,
    after_tax_contribution,
    employer_core_contribution,
    employer_match_contribution,
    -- Entry on the first of the month after the waiting period ends.
    cast(
        date_trunc('month', employee_hire_date + {{ var('eligibility_waiting_period_days') }})
        + interval 1 month
    as date) as eligibility_entry_date
from employment
