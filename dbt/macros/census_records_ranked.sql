{#- The raw census typed to the staging contract, every record ranked within
    its employee_id: rank 1 is the record staging keeps (most recent hire; on a
    tie the active record, then the later termination, then the higher pay).
    Shared by stg_census_data (keeps rank 1) and stg_census_duplicates_audit
    (lists every id with more than one record) so both apply the same rule. -#}
{% macro census_records_ranked() %}
with typed as (
    select
        trim(cast(employee_id as varchar)) as employee_id,
        nullif(trim(cast(employee_ssn as varchar)), '') as employee_ssn,
        cast(employee_birth_date as date) as employee_birth_date,
        cast(employee_hire_date as date) as employee_hire_date,
        cast(employee_termination_date as date) as employee_termination_date,
        cast(employee_gross_compensation as double) as employee_gross_compensation,
        cast(employee_plan_year_compensation as double) as employee_plan_year_compensation,
        cast(active as boolean) as active,
        cast(employee_deferral_rate as double) as employee_deferral_rate,
        cast(employee_contribution as double) as employee_contribution,
        cast(pre_tax_contribution as double) as pre_tax_contribution,
        cast(roth_contribution as double) as roth_contribution,
        cast(after_tax_contribution as double) as after_tax_contribution,
        cast(employer_core_contribution as double) as employer_core_contribution,
        cast(employer_match_contribution as double) as employer_match_contribution
    from {{ source('census', 'census_raw') }}
)
select
    *,
    row_number() over (
        partition by employee_id
        order by
            employee_hire_date desc nulls last,
            employee_termination_date desc nulls first,
            employee_gross_compensation desc nulls last,
            employee_ssn nulls last
    ) as record_rank,
    count(*) over (partition by employee_id) as record_count
from typed
{% endmacro %}
