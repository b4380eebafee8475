
abc{service_name="a"}è  