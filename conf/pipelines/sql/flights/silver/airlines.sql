-- silver.airlines: one row per carrier code.
with source as (
    select * from bronze_batch
),

final as (
    select
        upper(trim(carrier)) as carrier,
        name as airline_name,
        _source_file,
        _ingested_at,
        _batch_id
    from source
)

select * from final
